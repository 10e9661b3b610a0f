"""The reference phase-1 BERT checkpoint: conversion to our model and offline identity checks."""
