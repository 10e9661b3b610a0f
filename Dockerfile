# tf_gp2bm for GPU nodes: TF 2.20 (CUDA 12.5 / cuDNN 9 wheels), the pinned stack, Horovod 0.28.1 with NCCL.
#   docker build -t tf_gp2bm .
#   docker run --gpus all --ipc=host --ulimit memlock=-1 --ulimit stack=67108864 \
#     -v /data:/data:ro -v $PWD/results:/workspace/tf_gp2bm/results tf_gp2bm ./run_benchmark.sh all ...
FROM nvidia/cuda:12.5.1-cudnn-devel-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 TF_USE_LEGACY_KERAS=1
RUN apt-get update && apt-get install -y --no-install-recommends \
      software-properties-common git build-essential libjpeg-turbo8-dev libnccl2 libnccl-dev openssh-client \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /workspace/tf_gp2bm
COPY requirements.txt scripts/setup.sh scripts/
RUN mv scripts/requirements.txt . && GP2BM_GPU=1 PYTHON=python3.11 bash scripts/setup.sh \
    && .venv/bin/python -c "import horovod.tensorflow as h; assert h.nccl_built(), 'horovod built without NCCL'"
COPY . .
RUN .venv/bin/python -m tf_gp2bm.tasks.resnet.jpeg_op
ENV PATH=/workspace/tf_gp2bm/.venv/bin:$PATH
CMD ["./run_benchmark.sh", "--help"]
