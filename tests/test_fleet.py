"""One process of a fleet (issue 12): identity, port ranges, file_sd discovery, fork after
configure(). Each case runs in a fresh interpreter (global providers, fork)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from support.fresh import run_fresh
from support.otlp import OtlpReceiver
from support.servers import free_port

FORK_AND_CALL = """
import json, os, sys, time, urllib.request, modelwatch
config = modelwatch.configure({args})

def calls(n):
    for _ in range(n):
        with modelwatch.monitored(model="m", provider="p") as call:
            call.set_attribute("pid", os.getpid())

def scrape(port):
    if port is None:
        return None
    return urllib.request.urlopen(f"http://127.0.0.1:{{port}}/metrics", timeout=5).read().decode()

calls(2)  # recorded by the parent before the fork: never re-exported by the child
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    calls(3)
    child = modelwatch._config.current_config()
    page = scrape(child.prometheus_port)
    ok = modelwatch.flush(timeout_s=10)
    os.write(write, json.dumps({{"port": child.prometheus_port, "page": page, "ok": ok}}).encode())
    sys.exit(0)  # a normal exit: atexit removes the child's discovery file
os.close(write)
child = json.loads(os.fdopen(read).read())
_, status = os.waitpid(pid, 0)
page = scrape(config.prometheus_port)
modelwatch.flush(timeout_s=10)
print(json.dumps({{"parent": os.getpid(), "child_pid": pid, "status": status,
                  "parent_port": config.prometheus_port, "child": child, "page": page}}))
"""


def test_every_process_is_its_own_resource_and_a_child_never_recounts_the_parent(
    otlp_receiver: OtlpReceiver,
) -> None:
    ran = run_fresh(
        FORK_AND_CALL.format(args=f"otlp_endpoint={otlp_receiver.http_endpoint!r}"),
        env={"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"},
    )
    out = ran.out
    assert out["status"] == 0
    assert out["child"]["ok"] is True
    spans = otlp_receiver.wait_for_spans(5, name="chat m")
    by_pid: dict[int, set[str]] = {}
    for span in spans:
        assert span.resource["process.pid"] == span.attributes["pid"]
        assert span.resource["host.name"] == socket.gethostname()
        assert span.resource["deployment.environment"] == "test"
        by_pid.setdefault(span.attributes["pid"], set()).add(span.resource["service.instance.id"])
    assert set(by_pid) == {out["parent"], out["child_pid"]}
    assert all(len(ids) == 1 for ids in by_pid.values())  # stable for the process's life
    assert by_pid[out["parent"]] != by_pid[out["child_pid"]]  # new after fork
    # cumulative counts per resource: the parent's 2 and the child's 3, never 2 + 3 in the child
    points = otlp_receiver.wait_for_metric("gen_ai.client.operation.duration")
    latest: dict[str, int] = {}
    for point in points:
        key = str(point.resource["service.instance.id"])
        latest[key] = max(latest.get(key, 0), point.count or 0)
    assert sorted(latest.values()) == [2, 3]


def test_otel_resource_attributes_may_set_the_instance_id(otlp_receiver: OtlpReceiver) -> None:
    ran = run_fresh(
        FORK_AND_CALL.format(args=f"otlp_endpoint={otlp_receiver.http_endpoint!r}"),
        env={"OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=pod-7,service.name=svc-b"},
    )
    spans = otlp_receiver.wait_for_spans(5, name="chat m")
    ids = {s.attributes["pid"]: s.resource["service.instance.id"] for s in spans}
    assert ids[ran.out["parent"]] == "pod-7"
    assert ids[ran.out["child_pid"]] not in ("pod-7", "")  # never shared: the SDK renews it
    assert {s.resource["service.name"] for s in spans} == {"svc-b"}


def test_a_port_range_gives_each_process_its_own_port_and_discovery_file(tmp_path: Path) -> None:
    first = free_port()
    sd_dir = tmp_path / "sd"
    sd_dir.mkdir()
    host = socket.gethostname()
    stale = sd_dir / f"modelwatch-{host}-999999.json"  # a dead process's target
    stale.write_text("[]")
    other_host = sd_dir / "modelwatch-elsewhere-999999.json"  # not ours to judge
    other_host.write_text("[]")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        ran = run_fresh(
            FORK_AND_CALL.format(args=f"prometheus_port='{first}-{first + 5}'"),
            env={"MODELWATCH_PROMETHEUS_SD_DIR": str(sd_dir), "MODELWATCH_SERVICE_NAME": "eng"},
        )
    out = ran.out
    # the taken first port skipped (first + 1 is normally next: other processes on the
    # machine may hold it, so only the range is asserted)
    assert first < out["parent_port"] <= first + 5
    assert out["child"]["port"] not in (None, first, out["parent_port"])
    assert first < out["child"]["port"] <= first + 5
    # each page carries its own process's counts only
    assert "gen_ai_client_operation_duration_seconds_count{" in out["page"]
    assert "gen_ai_client_operation_duration_seconds_count{" in out["child"]["page"]
    assert _count(out["page"]) == 2
    assert _count(out["child"]["page"]) == 3
    # discovery: stale entry of a dead pid cleaned, the child's file removed at its exit,
    # the parent's file there until the parent exits (it has exited by now)
    assert not stale.exists()
    assert other_host.exists()
    assert list(sd_dir.glob(f"modelwatch-{host}-*.json")) == []


def test_discovery_file_content(tmp_path: Path) -> None:
    ran = run_fresh(
        """
        import json, os, modelwatch
        config = modelwatch.configure(prometheus_port="0", service_name="eng")
        sd = os.environ["MODELWATCH_PROMETHEUS_SD_DIR"]
        files = {name: json.load(open(os.path.join(sd, name))) for name in os.listdir(sd)}
        print(json.dumps({"port": config.prometheus_port, "files": files, "pid": os.getpid()}))
        """,
        env={"MODELWATCH_PROMETHEUS_SD_DIR": str(tmp_path)},
    )
    name = f"modelwatch-{socket.gethostname()}-{ran.out['pid']}.json"
    ((target,),) = [ran.out["files"][name]]
    assert target["targets"] == [f"127.0.0.1:{ran.out['port']}"]
    assert target["labels"]["service_name"] == "eng"
    assert target["labels"] == {"service_name": "eng", "pid": str(ran.out["pid"])}
    assert list(tmp_path.iterdir()) == []  # removed at exit


def test_fork_with_a_fixed_port_child_logs_one_error_and_parent_keeps_it() -> None:
    port = free_port()
    ran = run_fresh(FORK_AND_CALL.format(args=f"prometheus_port={port}"))
    out = ran.out
    assert out["status"] == 0
    assert out["parent_port"] == port
    assert out["child"]["port"] is None
    assert _count(out["page"]) == 2  # the parent still serves, its own counts
    logs = ran.stdout + ran.stderr
    (error,) = [line for line in logs.splitlines() if "modelwatch.prometheus.no_free_port" in line]
    assert f"pid={out['child_pid']}" in error  # the child's one error, none from the parent


def test_range_exhausted_at_configure_logs_once_and_continues() -> None:
    first = free_port()
    socks = []
    try:
        for port in (first, first + 1):
            s = socket.socket()
            s.bind(("127.0.0.1", port))
            s.listen()
            socks.append(s)
        ran = run_fresh(
            f"""
            import json, modelwatch
            config = modelwatch.configure(prometheus_port="{first}-{first + 1}")
            with modelwatch.monitored(model="m", provider="p"):
                pass
            print(json.dumps({{"port": config.prometheus_port}}))
            """
        )
    finally:
        for s in socks:
            s.close()
    assert ran.out == {"port": None}
    assert (ran.stdout + ran.stderr).count("modelwatch.prometheus.no_free_port") == 1


def _count(page: str) -> int:
    total = 0.0
    for line in page.splitlines():
        if line.startswith("gen_ai_client_operation_duration_seconds_count{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def test_env_port_range_is_honoured() -> None:
    first = free_port()
    ran = run_fresh(
        """
        import json, modelwatch
        config = modelwatch.configure()
        print(json.dumps({"port": config.prometheus_port, "ports": config.prometheus_ports}))
        """,
        env={"MODELWATCH_PROMETHEUS_PORT": f"{first}-{first + 3}"},
    )
    assert ran.out["ports"] == [first, first + 3]
    assert first <= ran.out["port"] <= first + 3
    assert json.dumps(ran.out)
    assert os.environ.get("MODELWATCH_PROMETHEUS_PORT") is None


SIGTERM_CASE = """
import os, signal, sys, time, modelwatch
{before}
modelwatch.configure(otlp_endpoint={endpoint!r})
for _ in range(3):
    with modelwatch.monitored(model="m", provider="p"):
        pass
{after}
"""


HOST_HANDLER = """
seen = []
signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
"""


def _terminated(
    receiver: OtlpReceiver, before: str, after: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWATCH_", "OTEL_"))}
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "600000"  # only the export at exit can deliver
    code = SIGTERM_CASE.format(before=before, after=after, endpoint=receiver.http_endpoint)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _exported_calls(receiver: OtlpReceiver) -> int:
    points = receiver.metric_points("gen_ai.client.operation.duration")
    return max((p.count or 0 for p in points), default=0)


def test_sigterm_with_its_default_action_exports_first_then_still_kills(
    otlp_receiver: OtlpReceiver,
) -> None:
    ran = _terminated(otlp_receiver, "", "os.kill(os.getpid(), signal.SIGTERM)\nprint('survived')")
    assert ran.returncode == -signal.SIGTERM, ran.stderr
    assert "survived" not in ran.stdout
    assert _exported_calls(otlp_receiver) == 3
    assert len(otlp_receiver.spans("chat m")) == 3


#: the script's first steps in the SIGTERM tests: a SIGTERM, and the host's handler has run
HOST_HANDLER_RAN = """
os.kill(os.getpid(), signal.SIGTERM)
while not seen:
    time.sleep(0.01)
"""


def test_sigterm_re_raised_after_the_host_handler_waits_for_the_export(
    otlp_receiver: OtlpReceiver,
) -> None:
    # uvicorn's pattern (Server.capture_signals): its handler, a graceful shutdown, then the
    # default action restored and SIGTERM raised again - which skipped atexit
    after = (
        HOST_HANDLER_RAN
        + """
print("host handler ran", flush=True)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.raise_signal(signal.SIGTERM)
print("graceful shutdown goes on", flush=True)
"""
    )
    ran = _terminated(otlp_receiver, HOST_HANDLER, after)
    assert ran.returncode == -signal.SIGTERM, ran.stderr
    assert ran.stdout.splitlines() == ["host handler ran", "graceful shutdown goes on"]
    assert _exported_calls(otlp_receiver) == 3


def test_a_child_forked_while_sigterm_is_held_back_does_not_inherit_the_block(
    otlp_receiver: OtlpReceiver,
) -> None:
    # after the host's handler ran, SIGTERM waits in the parent's main thread until exit; a
    # child forked then (a worker spawned during shutdown) must still be killable by SIGTERM
    after = (
        HOST_HANDLER_RAN
        + """
held = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
pid = os.fork()
if pid == 0:
    child = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    print("child blocked" if child else "child free", flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent held" if held else "parent free", flush=True)
"""
    )
    ran = _terminated(otlp_receiver, HOST_HANDLER, after)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[:2] == ["child free", "parent held"], ran.stdout


def test_a_host_sigterm_handler_still_gets_every_sigterm_and_sig_ign_is_kept(
    otlp_receiver: OtlpReceiver,
) -> None:
    after = """
for expected in (1, 2):  # e.g. a reload handler: the process lives on
    os.kill(os.getpid(), signal.SIGTERM)
    while len(seen) < expected:
        time.sleep(0.01)
print(len(seen), flush=True)
"""
    ran = _terminated(otlp_receiver, HOST_HANDLER, after)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["2"]
    assert _exported_calls(otlp_receiver) == 3  # a normal exit: atexit exports
    ignored = run_fresh(
        """
        import json, signal, modelwatch
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        modelwatch.configure()
        print(json.dumps({"ignored": signal.getsignal(signal.SIGTERM) is signal.SIG_IGN}))
        """
    )
    assert ignored.out == {"ignored": True}


def test_kubernetes_pod_set_up_one_fixed_port_on_every_interface(tmp_path: Path) -> None:
    # docs/deployment.md, Kubernetes: MODELWATCH_PROMETHEUS_HOST=0.0.0.0, a fixed port
    port = free_port()
    ran = run_fresh(
        """
        import json, os, modelwatch
        from support.servers import listening_addresses
        config = modelwatch.configure()
        sd = os.environ["MODELWATCH_PROMETHEUS_SD_DIR"]
        (name,) = os.listdir(sd)
        print(json.dumps({"port": config.prometheus_port, "pid": os.getpid(),
                          "listening": listening_addresses(os.getpid()),
                          "target": json.load(open(os.path.join(sd, name)))[0]["targets"]}))
        """,
        env={
            "MODELWATCH_PROMETHEUS_HOST": "0.0.0.0",  # what a pod needs (for a second)
            "MODELWATCH_PROMETHEUS_PORT": str(port),
            "MODELWATCH_PROMETHEUS_SD_DIR": str(tmp_path),
            "PYTHONPATH": str(Path(__file__).parent),
        },
    )
    assert ran.out["port"] == port
    assert ["0.0.0.0", port] in ran.out["listening"]
    # the discovery target is this host's name, not the wildcard address
    assert ran.out["target"] == [f"{socket.gethostname()}:{port}"]


def test_the_collector_config_of_the_deployment_doc_holds_together() -> None:
    # no Collector binary on these machines: the rules its config validation applies
    doc = (Path(__file__).parents[1] / "docs" / "deployment.md").read_text()
    (block,) = re.findall(r"```yaml\n(# otelcol.yaml.*?)```", doc, re.S)
    config = yaml.safe_load(block)
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{component} is not configured"
    assert {"http", "grpc"} <= set(config["receivers"]["otlp"]["protocols"])
    for exporter in ("prometheus", "prometheusremotewrite"):  # service.instance.id kept
        assert config["exporters"][exporter]["resource_to_telemetry_conversion"]["enabled"]
    assert set(config["processors"]) == {"batch"}  # nothing that drops resource attributes
