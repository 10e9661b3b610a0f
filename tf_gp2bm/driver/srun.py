"""One Horovod run as one Slurm job step: `python -m tf_gp2bm.driver.srun --np=N --ntasks_per_node=M [srun options]
[--apptainer=IMAGE] -- python -m tf_gp2bm.train ...`

Horovod's own rendezvous server (the one horovodrun starts for Gloo) runs here, in the allocation's batch step;
srun starts one task per GPU, and each task takes its Horovod rank, local rank and node index from Slurm's
SLURM_PROCID / SLURM_LOCALID / SLURM_NODEID (the `task` form below) before it execs the trainer. This works with
every Horovod build (Gloo is always there); NCCL still carries the GPU all-reduces.
Options it does not know go to srun unchanged (--container-image/--container-mounts for pyxis, --mpi, ...).
"""
import argparse
import os
import socket
import subprocess
import sys

from tf_gp2bm.errors import EXIT_BAD_INPUT

from . import launch as launch_mod

CONTAINER_PYTHON = "python"  # the interpreter inside an image (ours puts the venv first on PATH)


def split_args(words):
  """(apptainer image or None, srun options) from the launcher arguments."""
  p = argparse.ArgumentParser(add_help=False)
  p.add_argument("--apptainer")
  a, rest = p.parse_known_args(list(words))
  return a.apptainer, rest


def _in_container(srun_args, apptainer):
  return bool(apptainer) or any(w.startswith("--container-image") for w in srun_args)


def task_argv(argv, srun_args, apptainer, wrap=True):
  """The per-task argv: inside a container the image's python replaces this machine's interpreter; wrap adds
  the apptainer command in front."""
  argv = list(argv)
  if _in_container(srun_args, apptainer) and argv and argv[0] == sys.executable:
    argv[0] = CONTAINER_PYTHON
  if apptainer and wrap:
    argv = ["apptainer", "exec", "--nv", apptainer, *argv]
  return argv


def step_command(launch, argv, ntasks_per_node):
  """srun argv running argv as ntasks_per_node tasks on every node of the launch's allocation."""
  apptainer, srun_args = split_args(launch.hvd_args)
  nodes = launch.num_hosts
  return ["srun", f"--nodes={nodes}", f"--ntasks={nodes * ntasks_per_node}", f"--ntasks-per-node={ntasks_per_node}",
          "--distribution=block", "--kill-on-bad-exit=1", *srun_args, *task_argv(argv, srun_args, apptainer)]


def rendezvous_address(nodes):
  """An address of this host the tasks can reach: GP2BM_RENDEZVOUS_ADDR, else the host name's address unless that is
  loopback on a multi-node step (Debian maps the host name to 127.0.1.1), else the first non-loopback IPv4."""
  if os.environ.get("GP2BM_RENDEZVOUS_ADDR"):
    return os.environ["GP2BM_RENDEZVOUS_ADDR"]
  addr = socket.gethostbyname(socket.gethostname())
  if nodes == 1 or not addr.startswith("127."):
    return addr
  import psutil  # a Horovod dependency; only needed on this path
  for addrs in psutil.net_if_addrs().values():
    for a in addrs:
      if a.family == socket.AF_INET and not a.address.startswith("127."):
        return a.address
  raise SystemExit("srun: no non-loopback IPv4 address for Horovod's rendezvous server; set GP2BM_RENDEZVOUS_ADDR")


def launch_step(np, ntasks_per_node, launcher_args, argv):
  """Starts the rendezvous server, runs the srun step, returns srun's exit code."""
  from horovod.runner.common.util.hosts import HostInfo, get_host_assignments  # optional dep, this path only
  from horovod.runner.http.http_server import RendezvousServer
  total, nodes = launch_mod.slurm_allocation()
  excluded = {h for w in launcher_args if w.startswith("--exclude=") for h in w.split("=", 1)[1].split(",")}
  nodes = [n for n in nodes if n[0] not in excluded]  # nodes the driver left to the tf.data service
  if np % ntasks_per_node:
    raise SystemExit(f"srun: --np={np} is not a multiple of --ntasks_per_node={ntasks_per_node}")
  hosts = nodes[:np // ntasks_per_node]
  if len(hosts) * ntasks_per_node != np:
    raise SystemExit(f"srun: --np={np} needs {np // ntasks_per_node} nodes, the allocation has {len(nodes)}")
  plan = get_host_assignments([HostInfo(h, ntasks_per_node) for h, _ in hosts], np)
  server = RendezvousServer()
  port = server.start()
  server.init(plan)
  env = dict(os.environ, HOROVOD_GLOO_RENDEZVOUS_ADDR=rendezvous_address(len(hosts)),
             HOROVOD_GLOO_RENDEZVOUS_PORT=str(port), HOROVOD_CONTROLLER="gloo", HOROVOD_CPU_OPERATIONS="gloo",
             GP2BM_SRUN_TASKS_PER_NODE=str(ntasks_per_node), PYTHONUNBUFFERED="1")
  step = launch_mod.Launch("slurm", np, tuple(hosts), tuple(launcher_args))
  apptainer, srun_args = split_args(launcher_args)
  trainer = task_argv(argv, srun_args, apptainer, wrap=False)  # step_command wraps the task shim instead
  cmd = step_command(step, [sys.executable, "-m", "tf_gp2bm.driver.srun", "task", "--", *trainer], ntasks_per_node)
  print(f"[srun] {' '.join(cmd)}", flush=True)
  try:
    return subprocess.call(cmd, env=env)
  finally:
    server.stop()


def task_env(env):
  """Horovod's rank variables from Slurm's, for one task of the step (block distribution)."""
  per_node = int(env["GP2BM_SRUN_TASKS_PER_NODE"])
  rank, local, node = int(env["SLURM_PROCID"]), int(env["SLURM_LOCALID"]), int(env["SLURM_NODEID"])
  size = int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS")))
  if rank != node * per_node + local:
    raise SystemExit(f"srun task: rank {rank} is not node {node} x {per_node} + local {local}; the step must use "
                     "--distribution=block with the same tasks on every node")
  return {"HOROVOD_RANK": str(rank), "HOROVOD_SIZE": str(size), "HOROVOD_LOCAL_RANK": str(local),
          "HOROVOD_LOCAL_SIZE": str(per_node), "HOROVOD_CROSS_RANK": str(node),
          "HOROVOD_CROSS_SIZE": str(size // per_node),
          "HOROVOD_HOSTNAME": env.get("SLURMD_NODENAME", socket.gethostname())}


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if "--" not in argv:
    print("usage: python -m tf_gp2bm.driver.srun --np=N --ntasks_per_node=M [srun options] -- COMMAND...",
          file=sys.stderr)
    return EXIT_BAD_INPUT
  cut = argv.index("--")
  own, command = argv[:cut], argv[cut + 1:]
  if own[:1] == ["task"]:
    os.environ.update(task_env(os.environ))
    os.execvp(command[0], command)
  p = argparse.ArgumentParser(prog="python -m tf_gp2bm.driver.srun")
  p.add_argument("--np", type=int, required=True)
  p.add_argument("--ntasks_per_node", type=int, required=True)
  a, launcher_args = p.parse_known_args(own)
  return launch_step(a.np, a.ntasks_per_node, launcher_args, command)


if __name__ == "__main__":
  sys.exit(main())
