"""docker-compose.yml started as processes, the way Docker would run it.

No Docker engine runs here, so this test does what the engine would: it asks
`docker-compose config` for the resolved file (variables, anchors, secrets),
then starts each Kezek service's command as its own process with exactly the
environment compose gives it on top of the image's (deploy/Dockerfile ENV):
- every compose service gets a loopback address of its own (127.a.b.c), its
  "container": `0.0.0.0` and `127.0.0.1` inside it mean that address, and
  the name of another service means the other's address, so a service that
  calls a name compose does not wire reaches nobody, as in Docker;
- PostgreSQL (password auth, roles made by deploy/postgres/init-databases.sh),
  Kafka and Temporal are started by the test, and their compose names lead to
  them; the one-shot namespace step runs with the `temporal` CLI;
- `/run/secrets/<name>` is the secret's file, made by deploy/secrets.sh;
- the code is the wheel built from what the Dockerfile copies, unpacked
  read-only; only the locked dependencies can be imported; the processes run
  as uid 10001 when the suite runs as root, in their own state folder;
- Caddy runs deploy/caddy/Caddyfile with the certificate from the secrets.
Then a parent registers a child through the proxy (HTTPS, the portal's
name), activates the account from the e-mail's link, the district publishes
a place, and the referral reaches the parent's cabinet and phone (SMS).

Outside compose, as an operator's: the SMTP relay and the SMS provider (the
development stand-ins), and KEZEK_NOTIFICATIONS_TIMEZONE set to a zone where
it is noon, so that the SMS quiet hours do not hold the message.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import random
import re
import shutil
import ssl
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from packaging.utils import canonicalize_name

from kezek.infra.kafka import KafkaBroker
from kezek.infra.postgres import PostgresCluster, open_temp_folder
from kezek.infra.procs import free_port, port_open, stop_processes, wait_until
from kezek.infra.temporal import TemporalDevServer, cli_path
from kezek.trust import ServiceKeys, staff_principal
from services.notifications.devservers import DevSmsGateway, DevSmtpServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PORTAL, STAFF = "portal.kezek.test", "staff.kezek.test"
INFRA = {"postgres": 5432, "kafka": 9092, "temporal": 7233}
NOT_HERE = {"temporal-schema": "needs temporal-sql-tool (admin-tools image)",
            "temporal-ui": "a web UI nothing depends on"}
RUN_BY_THE_TEST = {"temporal-namespace", "proxy"}
IMAGE_USER = 10001
MAIN = "import sys; from kezek.cli import main; sys.exit(main(sys.argv[1:]))"   # the image's `kezek`
PHONE, EMAIL = "+996 555 010 203", "topology@example.kg"


def midday_zone() -> str:
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}"


def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's last stage (PATH aside)."""
    final = (ROOT / "deploy" / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    text = re.sub(r"\\\n", " ", final)
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                if key != "PATH":
                    env[key] = value
    return env


def build_code(tmp: Path) -> Path:
    """The wheel from exactly what the Dockerfile copies, unpacked read-only."""
    src = tmp / "src"
    src.mkdir()
    copies = re.findall(r"^COPY (?!--from)(.+) (\S+)$", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)
    for sources, _dest in copies:
        for name in sources.split():
            if name.startswith("deploy/"):
                continue
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy(path, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp / "wheel"), str(src)], check=True, capture_output=True, timeout=300)
    code = tmp / "opt"
    with zipfile.ZipFile(next((tmp / "wheel").glob("kezek-*.whl"))) as whl:
        whl.extractall(code)
    (code / "sitecustomize.py").write_text(import_guard())
    for p in [code, *code.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    return code


def import_guard() -> str:
    """Only what deploy/requirements.lock installs can be imported: the
    modules of every other distribution in this virtualenv are refused."""
    lock = (ROOT / "deploy" / "requirements.lock").read_text()
    allowed = {canonicalize_name(n) for n in re.findall(r"^([A-Za-z0-9_.\-]+)==", lock, re.M)}
    blocked = set()
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name in allowed or name in ("kezek", "pip"):
            continue
        for f in dist.files or []:
            top = f.parts[0]
            if top.endswith((".dist-info", ".pth", "..")) or top.startswith(("__", "_editable")) or top == "..":
                continue
            blocked.add(top.removesuffix(".py"))
    return ("import sys\n"
            f"BLOCKED = {sorted(blocked)!r}\n"
            "class Guard:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in BLOCKED:\n"
            "            raise ModuleNotFoundError(f'{name} is not in the image (deploy/requirements.lock)')\n"
            "sys.meta_path.insert(0, Guard())\n")


@dataclass
class Topology:
    tmp: Path
    config: dict
    addresses: dict[str, str]
    endpoints: dict[str, str]
    code: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    static_addresses: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    def secret_path(self, name: str) -> str:
        return self.config["secrets"][name]["file"]

    def secrets_of(self, service: str) -> Path:
        """The service's /run/secrets: only the secrets compose gives it, at their targets."""
        mount = self.tmp / "mounts" / service
        if not mount.exists():
            mount.mkdir(parents=True)
            for item in self.config["services"][service].get("secrets") or []:
                item = {"source": item} if isinstance(item, str) else item
                target = mount / item.get("target", item["source"])
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(self.secret_path(item["source"]), target)
            for p in [mount, *mount.rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o444)
        return mount

    def rewrite(self, value: str, service: str) -> str:
        """A value as the service's process must see it outside its container."""
        own = self.addresses[service]
        value = value.replace("/run/secrets", str(self.secrets_of(service)))
        for name, static in self.static_addresses.items():
            value = value.replace(static, self.addresses[name])
        value = value.replace("/var/lib/kezek", str(self.state_dir(service)))
        value = re.sub(r"(?<![\d.])(0\.0\.0\.0|127\.0\.0\.1|localhost)(?![\d.])", own, value)
        for host, port in INFRA.items():
            value = re.sub(rf"(?<![\w.\-]){host}:{port}\b", self.endpoints[host], value)
        for name, address in self.addresses.items():
            value = re.sub(rf"(?<![\w.\-]){re.escape(name)}(?=:\d)", address, value)
        return value

    def state_dir(self, service: str) -> Path:
        path = self.tmp / "state" / service
        if not path.exists():
            path.mkdir(parents=True)
            if os.geteuid() == 0:
                os.chown(path, IMAGE_USER, IMAGE_USER)
        return path

    def env_of(self, service: str) -> dict[str, str]:
        spec = self.config["services"][service]
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": "/nonexistent",
               "TMPDIR": str(self.tmp / "tmp"), "PYTHONPATH": str(self.code)}
        env.update(image_env())
        env.update({k: str(v) for k, v in (spec.get("environment") or {}).items()})
        env.update(self.extra_env)
        return {k: self.rewrite(v, service) if k not in ("PATH", "PYTHONPATH", "TMPDIR") else v
                for k, v in env.items()}

    def as_image_user(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return ["setpriv", f"--reuid={IMAGE_USER}", f"--regid={IMAGE_USER}", "--clear-groups"]

    def kezek(self, service: str) -> list[str]:
        command = [str(c) for c in self.config["services"][service]["command"]]
        return [*self.as_image_user(), sys.executable, "-c", MAIN, *command]

    def log(self, service: str):
        return open(self.tmp / "logs" / f"{service}.log", "ab")

    def run_once(self, service: str, timeout: float = 300) -> None:
        out = self.log(service)
        r = subprocess.run(self.kezek(service), env=self.env_of(service), cwd=self.state_dir(service),
                           stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        assert r.returncode == 0, f"{service} failed:\n{self.tail(service)}"

    def start(self, service: str) -> None:
        self.procs[service] = subprocess.Popen(self.kezek(service), env=self.env_of(service),
                                               cwd=self.state_dir(service), stdout=self.log(service),
                                               stderr=subprocess.STDOUT, start_new_session=True)

    def healthy(self, service: str) -> bool:
        """The service's own compose health check, run inside its 'container'."""
        proc = self.procs[service]
        if proc.poll() is not None:
            raise AssertionError(f"{service} exited with {proc.returncode}:\n{self.tail(service)}")
        test = [self.rewrite(str(a), service) for a in self.config["services"][service]["healthcheck"]["test"]]
        assert test[0] == "CMD" and test[1] in ("python", "kezek"), test
        if test[1] == "kezek":   # the image's entrypoint
            cmd = [*self.as_image_user(), sys.executable, "-c", MAIN, *test[2:]]
        else:
            cmd = [*self.as_image_user(), sys.executable, *test[2:]]
        try:
            return subprocess.run(cmd, env=self.env_of(service), cwd=self.state_dir(service), capture_output=True,
                                  timeout=30).returncode == 0
        except subprocess.TimeoutExpired:
            # As compose counts a check past its timeout: failed this time,
            # tried again (a dozen processes starting at once on two cores
            # can hold a probe's own start-up for that long).
            return False

    def tail(self, service: str, lines: int = 40) -> str:
        path = self.tmp / "logs" / f"{service}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        stop_processes(self.procs.values(), timeout=20)


def compose_config(tmp: Path, variables: dict[str, str]) -> dict:
    out = subprocess.run([shutil.which("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config"],
                         env={**os.environ, **variables}, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def start_postgres(tmp: Path, topo_config: dict, secrets: Path) -> PostgresCluster:
    """A cluster with the image's authentication (trust on the socket for the
    init scripts, passwords over TCP), initialised by the compose file's script."""
    hba = tmp / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    hba.chmod(0o644)
    spec = topo_config["services"]["postgres"]
    command = spec.get("command", [])
    settings = dict(command[i + 1].split("=", 1) for i, a in enumerate(command) if a == "-c")
    cluster = PostgresCluster(tmp / "pg", durable=False, settings={**settings, "hba_file": str(hba)}).start()
    (init,) = [v.split(":")[0] for v in spec["volumes"] if "docker-entrypoint-initdb.d" in str(v)]
    env = {**os.environ, **{k: str(v) for k, v in spec["environment"].items()},
           "SECRETS_DIR": str(secrets), "PGHOST": str(cluster.data_dir), "PGPORT": str(cluster.port)}
    r = subprocess.run(["runuser", "-u", "postgres", "--", "sh", init] if os.geteuid() == 0 else ["sh", init],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return cluster


def run_namespace_step(config: dict, temporal: TemporalDevServer) -> None:
    spec = config["services"]["temporal-namespace"]
    mounts = dict(reversed(v.split(":")[:2]) for v in spec["volumes"])
    argv = [mounts.get(a, a) for a in spec["entrypoint"]]
    env = {k: str(v) for k, v in spec["environment"].items()}
    env["TEMPORAL_ADDRESS"] = env["TEMPORAL_ADDRESS"].replace("temporal:7233", temporal.address)
    env["PATH"] = f"{cli_path().parent}:{os.environ['PATH']}"
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def start_proxy(topo: Topology) -> subprocess.Popen:
    spec = topo.config["services"]["proxy"]
    (caddyfile,) = [v.split(":")[0] for v in spec["volumes"] if v.endswith("/etc/caddy/Caddyfile:ro")]
    text = topo.rewrite(Path(caddyfile).read_text(), "proxy")
    # Its 'container' is its own address: bind there, not on every interface.
    text = text.replace("{\n\tadmin off", "{\n\tdefault_bind " + topo.addresses["proxy"] + "\n\tadmin off", 1)
    (topo.tmp / "Caddyfile").write_text(text)
    env = {**topo.env_of("proxy"), "XDG_DATA_HOME": str(topo.tmp / "caddy-data"),
           "XDG_CONFIG_HOME": str(topo.tmp / "caddy-config")}
    return subprocess.Popen(["caddy", "run", "--adapter", "caddyfile", "--config", str(topo.tmp / "Caddyfile")],
                            env=env, stdout=topo.log("proxy"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def tmp_path():
    # Under /tmp and open to other users: PostgreSQL and the image's user must reach it.
    path = open_temp_folder("kezek-topology-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_compose_topology_registers_a_child_and_reaches_a_referral_and_an_sms(tmp_path):
    started = time.monotonic()
    for d in ("logs", "tmp", "state"):
        (tmp_path / d).mkdir()
    os.chmod(tmp_path / "tmp", 0o1777)
    secrets = tmp_path / "secrets"
    r = subprocess.run(["bash", str(ROOT / "deploy" / "secrets.sh"), str(secrets)], capture_output=True, text=True,
                       env={**os.environ, "KEZEK_PORTAL_DOMAIN": PORTAL, "KEZEK_STAFF_DOMAIN": STAFF,
                            "KEZEK": str(Path(sys.executable).parent / "kezek")}, timeout=60)
    assert r.returncode == 0, r.stderr
    # Docker mounts each secret file into its container (Topology.secrets_of);
    # the database's init script reads them in place.
    for d in (secrets, secrets / "service-keys"):
        os.chmod(d, 0o711)
    # The operator's mail relay and SMS provider: outside every container,
    # at addresses of their own.
    net = f"127.{random.randint(100, 250)}.{random.randint(0, 250)}"
    smtp = DevSmtpServer(host=f"{net}.2").start()
    sms = DevSmsGateway(host=f"{net}.3", receipt_secret=(secrets / "sms_receipt_secret").read_bytes()).start()
    config = compose_config(tmp_path, {
        "KEZEK_SECRETS": str(secrets), "KEZEK_PORTAL_DOMAIN": PORTAL, "KEZEK_STAFF_DOMAIN": STAFF,
        "SMTP_HOST": smtp.host, "SMTP_PORT": str(smtp.port), "SMS_GATEWAY_URL": sms.url})
    kezek = [name for name, spec in config["services"].items()
             if str(spec.get("build", {}).get("dockerfile", "")).endswith("deploy/Dockerfile")]
    one_shot = {dep for spec in config["services"].values() for dep, c in (spec.get("depends_on") or {}).items()
                if c.get("condition") == "service_completed_successfully" and dep in kezek}
    assert one_shot == {"migrate"}, one_shot
    others = set(config["services"]) - set(kezek) - set(INFRA) - set(NOT_HERE) - RUN_BY_THE_TEST
    assert not others, f"the topology test does not know how to run {others}"
    addresses = {name: f"{net}.{10 + i}" for i, name in enumerate(sorted(config["services"]))}
    static = {name: n["ipv4_address"] for name, s in config["services"].items()
              for n in (s.get("networks") or {}).values() if isinstance(n, dict) and n.get("ipv4_address")}

    pg = kafka = temporal = None
    topo = None
    try:
        pg = start_postgres(tmp_path, config, secrets)
        kafka = KafkaBroker(tmp_path / "kafka").start()
        temporal = TemporalDevServer(tmp_path / "temporal").start()
        run_namespace_step(config, temporal)
        topo = Topology(tmp_path, config, addresses,
                        {"postgres": f"127.0.0.1:{pg.port}", "kafka": kafka.bootstrap, "temporal": temporal.address},
                        build_code(tmp_path), extra_env={"KEZEK_NOTIFICATIONS_TIMEZONE": midday_zone()},
                        static_addresses=static)
        infra_ready = time.monotonic()

        # The image's assumptions: test tools absent, code read-only, state writable.
        probe = ("import importlib.util, pathlib, kezek, os\n"
                 "assert importlib.util.find_spec('fastapi')\n"
                 "try:\n    import pytest\nexcept ModuleNotFoundError as e:\n    print('no-pytest', e)\n"
                 "code = pathlib.Path(kezek.__file__).parents[1]\n"
                 "print('code-writable', os.access(code, os.W_OK), 'state-writable', os.access('.', os.W_OK))\n")
        r = subprocess.run([*topo.as_image_user(), sys.executable, "-c", probe], env=topo.env_of("gateway"),
                           cwd=topo.state_dir("gateway"), capture_output=True, text=True, timeout=60)
        assert "no-pytest" in r.stdout and "requirements.lock" in r.stdout, r.stdout + r.stderr
        assert "code-writable False state-writable True" in r.stdout, r.stdout + r.stderr
        for service in sorted(one_shot):
            topo.run_once(service)
        long_running = [s for s in kezek if s not in one_shot]
        for service in long_running:
            topo.start(service)
        for service in long_running:
            if "healthcheck" in config["services"][service]:
                wait_until(lambda s=service: topo.healthy(s), 120, f"{service} health check")
        proxy = start_proxy(topo)
        topo.procs["proxy"] = proxy
        wait_for(lambda: port_open(8443, topo.addresses["proxy"]), 30, "the proxy", topo)
        up = time.monotonic()

        # --- a parent, through the proxy, over TLS, at the portal's name ---
        tls = ssl.create_default_context(cafile=topo.secret_path("tls_cert"))
        portal = httpx.Client(base_url=f"https://{topo.addresses['proxy']}:8443", verify=tls, timeout=30,
                              headers={"Host": PORTAL})

        def call(method, path, **kw):
            return portal.request(method, path, extensions={"sni_hostname": PORTAL}, **kw)

        # The operator's console (the `cli` caller, acting for an administrator)
        # with the deployment's own keys, a fresh token per request.
        keys = ServiceKeys.from_folder(secrets / "service-keys")

        def as_admin(request: httpx.Request) -> httpx.Request:
            token = keys.sign("cli", "queue", staff_principal("topology", "admin"))
            request.headers["Authorization"] = f"Bearer {token}"
            return request

        queue = httpx.Client(base_url=f"http://{topo.addresses['queue']}:8002/api/v1", auth=as_admin, timeout=30)
        queue.put("/kindergartens/top-1", json={"name": "№1 «Топология»", "district": "Bishkek/Leninsky",
                                                "address": "Киевская 1", "lat": 42.87, "lon": 74.59,
                                                "languages": ["ru"]}).raise_for_status()
        r = call("POST", "/api/v1/drafts", json={"locale": "ru"})
        assert r.status_code == 201, r.text
        draft = r.json()["draft"]
        child = {"pin": "21506202400011", "surname": "Асанов", "name": "Айбек"}
        parent = {"role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": "11203199000123",
                  "document_type": "id_card", "document_number": "ID1234567", "document_issued_on": "2020-05-01",
                  "address": {"region": "41711000000000", "district": "41711210000000",
                              "settlement": "41711000000001", "street": "улица Киевская", "house": "12"},
                  "phone": PHONE, "email": EMAIL}
        assert call("PUT", f"/api/v1/drafts/{draft}/child", json=child).status_code == 200
        assert call("PUT", f"/api/v1/drafts/{draft}/parent", json=parent).status_code == 200
        assert call("POST", f"/api/v1/drafts/{draft}/email-code").status_code == 202
        code = wait_for(lambda: mail_match(smtp, r"\b(\d{6})\b"), 90, "the e-mail code", topo)
        assert call("POST", f"/api/v1/drafts/{draft}/email-code/verify", json={"code": code}).status_code == 200
        r = call("POST", f"/api/v1/drafts/{draft}/submit", json={"category": "general", "language": "ru",
                                                                 "preferences": ["top-1"], "agreement": True})
        assert r.status_code == 201, r.text
        application_id = r.json()["application_id"]
        # The activation link in the e-mail names the portal as parents reach it.
        token = wait_for(lambda: mail_match(smtp, rf"https://{re.escape(PORTAL)}/\S*?token=([\w\-.~%]+)"), 90,
                         "the activation link", topo)
        assert call("POST", "/api/v1/activation", json={"token": token, "password": "a long enough password"}
                    ).status_code == 200
        r = call("POST", "/api/v1/sessions", json={"login": EMAIL, "password": "a long enough password"})
        assert r.status_code == 201, r.text
        bearer = {"Authorization": f"Bearer {r.json()['token']}"}

        # --- the district publishes a place: a referral, held by a workflow, and an SMS ---
        wait_for(lambda: entry_queued(queue, application_id), 90, "the queue entry", topo)
        queue.post("/kindergartens/top-1/places", json={"cohort": 2024, "language": "ru", "count": 1}
                   ).raise_for_status()
        digits = re.sub(r"\D", "", PHONE)
        texts = wait_for(lambda: [r.text for r in sms.accepted.values() if re.sub(r"\D", "", r.to) == digits],
                         120, "the referral SMS", topo)
        assert any("Топология" in t or "top-1" in t or "№1" in t for t in texts), texts
        referral = wait_for(lambda: referral_in_cabinet(call, bearer), 60, "the referral in the cabinet", topo)
        assert "top-1" in json.dumps(referral, ensure_ascii=False)
        # The staff pages answer at their own name, behind the same proxy.
        r = portal.get("/", headers={"Host": STAFF}, extensions={"sni_hostname": STAFF})
        assert r.status_code in (200, 303), r.status_code
        print(f"\ntopology: infra {infra_ready - started:.1f} s, services up {up - infra_ready:.1f} s, "
              f"registration to SMS {time.monotonic() - up:.1f} s, total {time.monotonic() - started:.1f} s")
    finally:
        if topo is not None:
            topo.stop()
        for server in (temporal, kafka):
            if server is not None:
                server.stop(hard=True)
        if pg is not None:
            pg.stop()
        smtp.stop()
        sms.stop()


def wait_for(fn, timeout: float, what: str, topo: Topology):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in topo.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{topo.tail(name)}"
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    logs = "\n".join(f"--- {s}\n{topo.tail(s, 15)}" for s in topo.procs)
    raise AssertionError(f"{what} did not come within {timeout} s\n{logs}")


def mail_match(smtp: DevSmtpServer, pattern: str) -> str | None:
    for message in reversed(smtp.to(EMAIL)):
        body = message.get_body(("plain", "html"))
        m = re.search(pattern, body.get_content() if body else "")
        if m:
            return m.group(1)
    return None


def entry_queued(queue: httpx.Client, application_id: str) -> bool:
    return queue.get(f"/queue-entries/{application_id}").status_code == 200


def referral_in_cabinet(call, bearer) -> dict | None:
    r = call("GET", "/api/v1/me", headers=bearer)
    return find_referral(r.json()) if r.status_code == 200 else None


def find_referral(node) -> dict | None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "referral" and isinstance(value, dict) and value:
                return value
            if key == "referrals" and isinstance(value, list) and value:
                return value[0]
            if (found := find_referral(value)) is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            if (found := find_referral(value)) is not None:
                return found
    return None
