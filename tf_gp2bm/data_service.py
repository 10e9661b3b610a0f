r"""ResNet train input from TensorFlow's tf.data service: a dispatcher and workers, each its own process, on hosts
with spare cores; the trainers receive finished batches over the network.

    python -m tf_gp2bm.data_service dispatcher --port=5050
    python -m tf_gp2bm.data_service worker --dispatcher=HOST:5050 --port=5051
    python -m tf_gp2bm.train --task=resnet --data_service=HOST:5050 ...

Sharding (docs/multinode.md, "Input from the tf.data service"): one job per rank and per run, in TF's
`distributed_epoch` mode. Rank r's job reads exactly the files a local rank r reads (round robin over the sorted
train files), and the dispatcher hands each of those files to one worker per pass, so every image is produced once
per epoch: ranks hold disjoint files, and within a rank's job dynamic sharding splits its files over workers
without overlap; a pass is one iteration of the job (the trainer repeats), so two passes never mix. Files and
records are shuffled on the workers, unseeded (a fresh graph per pass would repeat a seeded order).

The dispatcher and each worker load the fused image op (and self-checks it) before it serves, so the graphs the trainers
register can run there; it reads no record until a trainer asks for data, which happens after run_start.
"""
import argparse
import os
import queue
import socket
import sys
import threading
import uuid

from tf_gp2bm.errors import InputError

STALLED = "stopped answering"  # in the error a bounded wait raises; the task's diagnosis finds it by this
READY = "tf_gp2bm data_service ready"  # the line a server prints once it serves; the driver waits for it
DEFAULT_PORT = 5050


def check_address(address, flag="--data_service"):
  """HOST:PORT, checked without touching the network."""
  host, _, port = (address or "").rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise InputError(f"{flag}={address!r}: expected HOST:PORT of a tf.data service dispatcher "
                     "(`python -m tf_gp2bm.data_service dispatcher`)")
  return host, int(port)


def reachable(address, timeout_s=5.0):
  """'' when a TCP connection to the dispatcher opens, else why not (a preflight check; reads nothing)."""
  host, port = check_address(address)
  try:
    with socket.create_connection((host, port), timeout=timeout_s):
      return ""
  except OSError as e:
    return f"no tf.data service dispatcher answers at {address} ({e.strerror or e})"


def job_name(input_context):
  """One job per rank and pipeline: only this process reads it, so a later run, or another pipeline on the same
  dispatcher, never joins it (a shared name would hand one job's elements to both)."""
  return (f"tf_gp2bm-rank{input_context.input_pipeline_id}of{input_context.num_input_pipelines}-"
          f"{uuid.uuid4().hex[:12]}")


def distribute(dataset, address, input_context):
  """`dataset` (this rank's batches) produced by the service's workers, each element once per pass."""
  import tensorflow as tf
  check_address(address)
  return dataset.apply(tf.data.experimental.service.distribute(
      processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=f"grpc://{address}",
      job_name=job_name(input_context)))


def bounded_wait(dataset, address, timeout_s):
  """`dataset` (one pass of a service job), failing when no element arrives for `timeout_s` seconds.

  TF's consumer waits forever for a worker that died: with dynamic sharding the dead worker's unfinished files
  are not handed to another worker, and `distribute` has no deadline, so the pass neither fails nor ends. So a thread pulls the elements and the pipeline waits on it with a deadline; the error it raises ends
  the run as bad input through the task's diagnosis. Costs one host copy per batch on the trainer."""
  import tensorflow as tf
  end = object()

  def elements():
    ready, stop = queue.Queue(maxsize=2), threading.Event()

    def pull():
      try:
        for element in dataset:
          while not stop.is_set():
            try:
              ready.put(element, timeout=1.0)
              break
            except queue.Full:
              continue
          if stop.is_set():
            return
        ready.put(end)
      except Exception as e:  # handed to the consumer, which raises it
        ready.put(e)

    threading.Thread(target=pull, daemon=True, name="data_service-pull").start()
    try:
      while True:
        try:
          element = ready.get(timeout=timeout_s)
        except queue.Empty:
          raise TimeoutError(f"the tf.data service at {address}: no batch for {timeout_s:g} s; a worker "
                             f"{STALLED} (its files of this pass are lost, so the run cannot go on exact-once); "
                             "see the dispatcher's and workers' logs") from None
        if element is end:
          return
        if isinstance(element, Exception):
          raise element
        yield element
    finally:
      stop.set()

  return tf.data.Dataset.from_generator(elements, output_signature=dataset.element_spec)


def stall_message(error_message):
  """The line a bounded wait's error carries, or None when `error_message` is not one."""
  for line in error_message.splitlines():
    if STALLED in line and "tf.data service" in line:
      return line[line.index("the tf.data service"):].strip()
  return None


# --- the servers (their own processes) ------------------------------------------------------------------------
def _load_task_ops(out):
  """The custom ops the trainers' graphs may hold, loaded before serving (a graph with an unknown op fails)."""
  from tf_gp2bm.tasks.resnet import jpeg_op
  try:
    jpeg_op.load()
    out("fused image op loaded and self-checked")
  except jpeg_op.OpUnavailable as e:
    out(f"fused image op unavailable ({e}); trainers here must use --image_op=tf")


def serve(argv):
  p = argparse.ArgumentParser(prog="python -m tf_gp2bm.data_service")
  p.add_argument("role", choices=("dispatcher", "worker"))
  p.add_argument("--port", type=int, default=DEFAULT_PORT)
  p.add_argument("--dispatcher", help="worker: HOST:PORT of the dispatcher")
  # --worker_host: the same option under a name that horovodrun's parser (which the driver starts servers through)
  # does not read as an abbreviation of its own --hosts.
  p.add_argument("--host", "--worker_host", dest="host", default=None,
                 help="worker: the name trainers reach it by (default: this host's name)")
  p.add_argument("--work_dir", default=None, help="dispatcher: journal folder (fault tolerance); default: none")
  a = p.parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

  def out(message):
    print(f"[data_service {a.role} {socket.gethostname()}:{a.port}] {message}", flush=True)

  try:
    if a.role == "worker":
      check_address(a.dispatcher, "--dispatcher")
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  import tensorflow as tf
  service = tf.data.experimental.service
  _load_task_ops(out)  # the dispatcher too: dynamic sharding builds the registered graph there to split it
  if a.role == "dispatcher":
    server = service.DispatchServer(service.DispatcherConfig(
        port=a.port, work_dir=a.work_dir, fault_tolerant_mode=bool(a.work_dir)))
  else:
    host = a.host or socket.gethostname()
    server = service.WorkerServer(service.WorkerConfig(
        dispatcher_address=a.dispatcher, worker_address=f"{host}:{a.port}", port=a.port))
  out(READY)
  try:
    server.join()
  except KeyboardInterrupt:
    pass
  return 0


if __name__ == "__main__":
  sys.exit(serve(sys.argv[1:]))
