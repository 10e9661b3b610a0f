"""What each driver command does: preflight, run a set (new or resumed), finalize (score, submission tree,
package checker, verdict, reports), report and package. cli.py parses the command line into a SetConfig and
calls dispatch() with the results folder locked.
"""
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile

from tf_gp2bm.errors import EXIT_BAD_INPUT, InputError
from tf_gp2bm.files import read_json, repo_root, sha256_file, write_json_atomic
from tf_gp2bm.tasks import spec as task_spec

from . import checks, digest, hosts, launch, package, preflight, reports, runs, scoring, service, summary, system_desc
from .config import DEMO_SYSTEM, with_data

EXIT_STOPPED, EXIT_NOT_SUBMITTABLE = 1, 3
DEMO_DONE = ".gp2bm_demo_complete"  # written after a generator succeeded: a half-written folder is redone


def dispatch(config):
  ui = digest.Terminal(config.verbose)
  try:
    if config.command == "preflight":
      return preflight_only(config, ui)
    if config.command in ("report", "package"):
      return report_or_package(config, ui)
    return run_set(config, ui)
  except KeyboardInterrupt:  # Ctrl-C: the running trainer was stopped and its run kept as an attempt (runs.py)
    print("stopped by Ctrl-C; rerun the same command to continue the set", file=sys.stderr)
    return 128 + signal.SIGINT
  except runs.RunInterrupted as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_STOPPED
  except OSError as e:  # a read-only or full file system under the results: say where, keep what was written
    where = e.filename or f"a file under {config.set_dir or config.results_root}"
    print(f"error: {e.strerror or e}: {where}. Nothing already written was removed; make room (or make it "
          "writable), then rerun the same command: finished runs are kept, an interrupted one is redone",
          file=sys.stderr)
    return EXIT_STOPPED


# --- set up ------------------------------------------------------------------------------------------------------
def make_launch(config):
  o = config.launch
  service_hosts = config.data_service.host_names if config.data_service else ()
  return launch.from_args(np=o.np, hosts=o.hosts, hostfile=o.hostfile, hvd_args=o.hvd_args, launcher=o.launcher,
                          service_hosts=service_hosts)


def default_system_name(config, run_launch):
  if config.system_name:
    return config.system_name
  gpus = system_desc.gpu_info()
  return f"{run_launch.np}x{gpus[0]['name'].replace(' ', '-')}" if gpus else "cpu-demo"


def prepare_demo_data(config, ui):
  """Generates each task's demo data once (later demo sets reuse it); returns config with the data flags
  pointing at it wherever the command line left them out."""
  root = config.demo_data_dir or os.path.join(config.results_root, "demo_data")
  for name in config.tasks:
    spec = task_spec.get(name)
    out = os.path.join(root, name)
    if not os.path.exists(os.path.join(out, DEMO_DONE)):
      os.makedirs(out, exist_ok=True)
      log_path = os.path.join(root, f"{name}.log")
      ui.say(f"generating demo data: python -m {spec.demo_module} --out={out}  (output in {log_path})")
      with open(log_path, "ab") as log:
        rc = subprocess.call([sys.executable, "-m", spec.demo_module, f"--out={out}"], cwd=repo_root(),
                             stdout=log, stderr=subprocess.STDOUT)
      if rc != 0:
        raise InputError(f"python -m {spec.demo_module} --out={out} failed with exit {rc}; see {log_path}")
      open(os.path.join(out, DEMO_DONE), "w").close()
    config = with_data(config, name, spec.demo_data(out))
  return config


def build_sysdesc(config, system_name, run_launch, service_plan=None):
  overrides = {"number_of_nodes": str(run_launch.num_hosts)}  # the driver's host may not be one of the nodes
  overrides.update(read_json(config.system_json, "system description") if config.system_json else {})
  try:
    overrides.update(system_desc.parse_field_flags(config.system_fields))
  except ValueError as e:
    raise InputError(str(e)) from None
  desc = system_desc.build(config.org, system_name, config.status, overrides, demo=config.demo,
                           storage_path=config.results_root)
  if service_plan:  # sw_notes, the description's free-form field, after the vendor's own words
    desc["sw_notes"] = "; ".join(filter(None, [desc.get("sw_notes", ""), service.sw_note(service_plan)]))
  return desc


def check_official_identity(config):
  missing = [f"--{k}" for k in ("org", "status") if not getattr(config, k)]
  if missing:
    raise InputError(f"official mode needs {' and '.join(missing)} (the submitter and the system's availability)")


def find_set(config, record):
  """The set folder to continue (or None for a new one)."""
  if config.set_dir:
    rs = runs.RunSet(config.set_dir)
  elif config.new:
    return None
  else:
    latest = runs.RunSet.latest(config.results_root, config.command)
    if not latest:
      return None
    rs = runs.RunSet(latest)
  diff = rs.config.differs_from(record)
  if diff:
    raise InputError(f"{rs.path}/set.json differs from this command in {', '.join(diff)}: rerun with the same "
                     f"flags to continue it, or pass --new to start another set")
  return rs


def checks_for(config, run_launch, sysdesc, ui, service_plan=None, show=True):
  extra = [lambda: hosts.preflight(run_launch, config)] if run_launch.kind != "local" else []
  service_hosts = service.service_only_launch(service_plan, run_launch) if service_plan else None
  if service_hosts:  # the workers there need the same code, versions and data as the ranks' hosts
    extra.append(lambda: [(f"{service.CHECK} hosts: {check}", status, detail)
                          for check, status, detail in hosts.preflight(service_hosts, config)])
  ui.say(f"preflight: {run_launch.describe()}; checking (TensorFlow start-up and the trainer's dry runs take a "
         "while)...")
  # The dry runs see --data_service as the runs will (a flagfile with --deterministic is refused there, exit 2).
  trainer_args = {t: [f"--data_service={service_plan.address}"] for t in service_plan.tasks} if service_plan else {}
  rows = preflight.run_preflight(config, run_launch, sysdesc, extra, trainer_args)
  if show:
    ui.say(preflight.format_table(rows))
  return rows


def start_service(service_plan, run_launch, log_dir, ui):
  """(Running or None, preflight row) for the set's tf.data service; its failure is a FAIL row naming the host
  and role."""
  ui.say(f"tf.data service: starting {service_plan.describe()} over the ranks' launcher (output in "
         f"{log_dir})...")
  try:
    running = service.start(service_plan, run_launch, log_dir)
  except service.StartFailed as e:
    return None, service.failed_row(e)
  ui.say(f"tf.data service: {running.summary()}; {service_plan.scope()}")
  return running, running.row()


def preflight_only(config, ui):
  if config.system == DEMO_SYSTEM:  # the demo's checks: CPU is fine, the demo data where it was generated
    config = dataclasses.replace(config, command="demo")
    root = config.demo_data_dir or os.path.join(config.results_root, "demo_data")
    for name in config.tasks:
      out = os.path.join(root, name)
      if os.path.exists(os.path.join(out, DEMO_DONE)):
        config = with_data(config, name, task_spec.get(name).demo_data(out))
  config = dataclasses.replace(config, org=config.org or "unset", status=config.status or system_desc.STATUSES[0])
  run_launch = make_launch(config)
  service_plan = service.plan(config.data_service, config.tasks, run_launch)
  sysdesc = build_sysdesc(config, default_system_name(config, run_launch), run_launch, service_plan)
  rows = checks_for(config, run_launch, sysdesc, ui, service_plan, show=not service_plan)
  if service_plan and not preflight.bad_flagfiles(rows):  # started and stopped again: a check of its start only
    with tempfile.TemporaryDirectory(prefix="gp2bm_data_service_") as log_dir:
      running, row = start_service(service_plan, run_launch, log_dir, ui)
      if running:
        running.stop()
    rows.append(row)
    ui.say(preflight.format_table(rows))
  if preflight.bad_flagfiles(rows):
    return EXIT_BAD_INPUT
  return 1 if preflight.failures(rows) else 0


# --- running -----------------------------------------------------------------------------------------------------
def run_set(config, ui):
  if config.demo:
    ui.say(f"DEMO: {summary.DEMO_NOTE}")
    config = prepare_demo_data(config, ui)
  else:
    check_official_identity(config)
  run_launch = make_launch(config)
  service_plan = service.plan(config.data_service, config.tasks, run_launch)
  record = config.record(run_launch.np, default_system_name(config, run_launch))
  rs = find_set(config, record)
  if rs:
    rs.record_finished_runs(ui)  # the previous driver may have died after a trainer finished
  if rs and rs.is_complete():
    if os.path.exists(os.path.join(rs.path, "summary.json")):
      ui.say(f"set {rs.path} is complete (see its summary.md); pass --new to start another set")
      return 0
    return finalize(rs, ui)  # every run finished but the driver stopped before scoring
  sysdesc = build_sysdesc(config, record.system_name, run_launch, service_plan)
  rows = checks_for(config, run_launch, sysdesc, ui, service_plan)
  bad = preflight.bad_flagfiles(rows)
  if bad:
    ui.say(f"error: the trainer rejects {', '.join(r['check'].rsplit(' ', 1)[1] for r in bad)} flagfile(s) (see "
           "above); every run would fail the same way, so nothing is started (also not with --force)")
    return EXIT_BAD_INPUT
  failed = preflight.failures(rows)
  if failed and not config.force:
    ui.say(f"preflight: {len(failed)} check(s) FAILED ({', '.join(r['check'] for r in failed)}); fix them or pass "
           f"--force (the set is then NOT SUBMITTABLE)")
    return EXIT_STOPPED
  forced = bool(failed and config.force)
  if rs is None:
    rs = runs.RunSet.create(config.results_root, dataclasses.replace(record, forced=forced))
    package.snapshot_source(rs.path)
    if config.kernels:
      package.snapshot_kernels(rs.path, config.kernels)
      code = package.save_kernel_check(rs.path, config.kernels)
      ui.say(f"kernel_check --kernels={config.kernels}: " + ("within tolerance" if code == 0 else
             "DIFFERS from the defaults" if code == 1 else f"failed (exit {code})") +
             f"; report: {os.path.join(rs.path, package.KERNELS_SNAPSHOT, package.KERNEL_CHECK_REPORT)}")
    write_json_atomic(os.path.join(rs.path, "system.json"), sysdesc)
    ui.say(f"new set: {rs.path}")
  else:
    ui.say(f"continuing set: {rs.path}")
    if forced and not rs.config.forced:
      rs.update_config(forced=True)
  running, service_row = None, None
  if service_plan and not _service_done(rs, service_plan.tasks):  # once per session, before the first run's clock
    running, service_row = start_service(service_plan, run_launch, os.path.join(rs.path, service.LOG_DIR), ui)
    rows.append(service_row)
  write_json_atomic(os.path.join(rs.path, f"preflight-{runs.utc_now()}.json"), rows)
  if service_row and not running:
    ui.say(f"preflight: {service.CHECK} FAILED: {service_row['detail']}\nnothing was run; fix it and rerun the "
           "same command to continue the set")
    return EXIT_STOPPED
  try:
    ui.say(f"TensorBoard for the set: tensorboard --logdir {os.path.join(rs.path, 'runs')}")
    ui.say("each run's full output: runs/<task>/run_<i>/console.log" + ("" if config.verbose else
                                                                          " (--verbose streams it here)"))
    return run_all(rs, run_launch, ui, running)
  finally:
    if running:  # also on Ctrl-C, SIGTERM/SIGHUP (SystemExit) and any error: no server outlives the driver
      running.stop()


def run_all(rs, run_launch, ui, running=None):
  remaining = {t: sum(1 for d in rs.run_dirs(t) if not rs.is_finished(d)) for t in rs.config.tasks}
  progress = digest.SetProgress(ui, remaining)
  command = lambda argv: launch.command(run_launch, argv)  # noqa: E731
  service_hosts = service.service_only_launch(running.plan, run_launch) if running else None

  def drop():
    ok, detail = hosts.drop_caches_detail(run_launch)
    if service_hosts:  # the workers read the records there
      service_ok, service_detail = hosts.drop_caches_detail(service_hosts)
      return ok and service_ok, f"{detail}; tf.data service hosts: {service_detail}"
    return ok, detail

  try:
    for task in rs.config.tasks:
      if running and _service_done(rs, running.plan.tasks):
        running.stop()  # its tasks are done: the rest of the set (BERT) gets the host's cores back
      for i in range(rs.config.runs[task]):
        if rs.is_finished(rs.run_dir(task, i)):
          continue
        rec = rs.run_one(task, i, command, drop, ui)
        progress.run_done(task, None if rec.get("recovered") else rec.get("wall_s"))
        if rec.get("exit_code") == EXIT_BAD_INPUT:
          # Bad input fails every later run the same way: stop instead of burning the set.
          ui.say(f"[{task} {i + 1}] the trainer rejected its input (exit 2, see {rs.rel(rs.run_dir(task, i))}/"
                 "console.log); set stopped. Fix it and start a new set with --new")
          return EXIT_BAD_INPUT
  finally:
    if running:  # the service's work is done: stopped before the checkers and reports
      running.stop()
  return finalize(rs, ui)


def _service_done(rs, tasks):
  """Every run of the tasks that read from the tf.data service is finished."""
  return all(rs.is_finished(d) for t in tasks for d in rs.run_dirs(t))


# --- scoring and reports -----------------------------------------------------------------------------------------
def score_set(rs):
  return {t: scoring.score_task(t, rs.results(t), min_runs=min(rs.config.runs[t], task_spec.get(t).min_runs))
          for t in rs.config.tasks}


def recheck_changed_logs(rs, ui):
  """Runs whose mlperf.log differs from the one recorded when they finished: say so, re-run the checker and
  record both hashes. Returns their logs' paths relative to the set folder."""
  changed = []
  for task in rs.config.tasks:
    for d in rs.run_dirs(task):
      rec = rs.driver_record(d)
      path = os.path.join(d, runs.MLLOG)
      now = sha256_file(path) if os.path.exists(path) else None
      if not rec or not rec.get("finished") or now == rec.get("log_sha256"):
        if rec and rec.get("log_changed"):
          changed.append(rs.rel(path))  # changed at an earlier report: still not what the run wrote
        continue
      ui.say(f"{rs.rel(path)} changed since the run was recorded (sha256 {str(rec.get('log_sha256'))[:12]}... -> "
             f"{str(now)[:12]}...); re-running the compliance checker on it")
      result = scoring.parse_run(path, task, rs.config.ruleset)
      verdict = rs.compliance(d)
      history = rec.get("log_changed") or []
      history.append({"recorded_sha256": rec.get("log_sha256"), "sha256": now, "noticed": runs.utc_now()})
      rec.update(log_changed=history, log_sha256=now, converged=result.converged, minutes=result.minutes,
                 reason=result.reason, division=result.division, compliance=verdict.summary,
                 compliance_passed=verdict.passed)
      write_json_atomic(os.path.join(d, runs.DRIVER_JSON), rec)
      ui.say(f"  now: {'converged' if result.converged else 'NOT converged'}; compliance {verdict.summary[:100]}")
      changed.append(rs.rel(path))
  return changed


def finalize(rs, ui):
  """Scores the set, builds the submission tree, runs the package checker, writes every report."""
  changed = recheck_changed_logs(rs, ui)
  scored = score_set(rs)
  sysdesc = read_json(os.path.join(rs.path, "system.json"), "system description")
  org_dir, superseded = package.build_tree(rs, scored, sysdesc)
  if superseded:
    ui.say(f"the submission tree no longer matched the runs: kept as {rs.rel(superseded)}, built again")
  pc_log = os.path.join(rs.path, "package_checker.log")
  v = checks.package_check(org_dir, rs.config.ruleset, pc_log, rcp_bypass=rs.config.rcp_bypass)
  with open(os.path.join(rs.path, "package_checker.txt"), "w") as f:
    f.write(v.output)
  pc = {"passed": v.passed, "summary": v.summary, "log": rs.rel(pc_log)}
  pre = sorted(n for n in os.listdir(rs.path) if n.startswith("preflight-"))
  preflight_rows = read_json(os.path.join(rs.path, pre[0])) if pre else []
  s = summary.build(rs, scored, sysdesc, pc, preflight_rows, changed)
  paths = reports.write_all(rs.path, s)
  for name, t in s["tasks"].items():
    latency = "-" if t["latency_min"] is None else f"{t['latency_min']:.3f}"
    ui.say(f"{name}: olympic mean {latency} min" + (f" ({t['reason']})" if t["reason"] else ""))
  expected = " (expected for the demo, see below)" if rs.config.demo and not v.passed else ""
  ui.say(f"package checker{expected}: {v.summary[:300]}")
  score = s["score"]
  ui.say(f"GP2BM score = {score['computation']}" + (f" ({score['why_none']})" if score.get("why_none") else ""))
  verdict = s["verdict"]
  ui.say(verdict["headline"])
  for reason in verdict["reasons"] if verdict["kind"] != summary.DEMO else []:
    ui.say(f"  - {reason}")
  ui.say(f"reports: {rs.rel(paths['md'])}, summary.json, summary.csv, gp2bm.xlsx in {rs.path}")
  if verdict["kind"] == summary.NOT_SUBMITTABLE:
    return EXIT_NOT_SUBMITTABLE
  if score["value"] is None and all(t.task in scored for t in task_spec.GP2BM_SCORE):
    return EXIT_NOT_SUBMITTABLE
  return 0


def _newest_set(root):
  sets = sorted(n for n in os.listdir(root) if os.path.exists(os.path.join(root, n, "set.json"))) \
      if os.path.isdir(root) else []
  if not sets:
    raise InputError(f"no set folder under {root}; pass --set_dir")
  return os.path.join(root, sets[-1])


def report_or_package(config, ui):
  rs = runs.RunSet(config.set_dir or _newest_set(config.results_root))
  if not rs.is_complete():
    raise InputError(f"{rs.path}: the set is not finished; rerun its command to continue it first")
  if config.command == "report":
    return finalize(rs, ui)
  done = os.path.join(rs.path, "summary.json")
  if os.path.exists(done) and read_json(done, "summary").get("verdict"):
    kind = read_json(done, "summary")["verdict"]["kind"]
    code = EXIT_NOT_SUBMITTABLE if kind == summary.NOT_SUBMITTABLE else 0
  else:
    code = finalize(rs, ui)
  ui.say(f"package: {package.make_tarball(rs.path)}")
  return code
