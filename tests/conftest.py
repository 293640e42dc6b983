"""Shared fixtures of the whole suite (``pg_schema``: a throw-away PostgreSQL schema, at the end).

* ``micropython``: the real MicroPython unix port with the firmware importable; ``repo_root``.
* Gateway fixtures: a fresh SQLite ``store`` per test, uplink and reading builders (``make_uplink``,
  ``make_reading``, ``events``), and a real ``mosquitto`` broker started once per test session on free
  ports (plain and TLS, with a throw-away CA made with ``cryptography``), or one per test
  (``own_mosquitto``).
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import time as _time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.contract.records import RadioMeta, Reading, Uplink
from gateway.field.chirpstack_client import ChirpStackClient
from gateway.field.micropython import MicroPythonNotFound, find_micropython, run_code
from gateway.service.store import Store
from gateway.sim.chirpstack import ChirpStackSimulator

ROOT = Path(__file__).resolve().parent.parent


class MicroPython:
    """Runs snippets on the real ``micropython`` unix port with the firmware importable.

    ``run`` returns stdout; ``eval_json`` runs code whose last printed line is JSON and returns it.
    A failing run raises with MicroPython's stdout and stderr in the message.
    """

    def __init__(self, heapsize: str = "96k") -> None:
        self.heapsize = heapsize

    def run(self, code: str, *, stdin: str | None = None, timeout: float = 60.0, cwd: Path | None = None) -> str:
        return run_code(code, heapsize=self.heapsize, stdin=stdin, timeout=timeout, cwd=cwd).stdout

    def eval_json(self, code: str, **kwargs: Any) -> Any:
        out = self.run(code, **kwargs).strip().splitlines()
        assert out, "MicroPython printed nothing"
        return json.loads(out[-1])


@pytest.fixture(scope="session")
def micropython() -> MicroPython:
    """The MicroPython unix port with an ESP32-sized heap. Fails (never skips) when it is missing."""
    try:
        find_micropython()
    except MicroPythonNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    return MicroPython()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


T0 = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A new, empty store in the test's temporary directory."""
    s = Store.open(tmp_path / "gateway.sqlite")
    yield s
    s.close()


def make_uplink(
    f_cnt: int = 1,
    dedup: str | None = None,
    dev_eui: str = "0004a30b001c0530",
    f_port: int = 10,
    data: bytes = b"",
    received_at: datetime = T0,
    rssi: int | None = -87,
    snr: float | None = 7.5,
) -> Uplink:
    """An :class:`Uplink` as the ChirpStack parser would produce it."""
    return Uplink(
        dev_eui=dev_eui,
        device_name=f"node-{dev_eui[-4:]}",
        application_id="3f1c1a34-5d6c-4b61-8c4e-2f9a3c1b7d20",
        f_port=f_port,
        f_cnt=f_cnt,
        data=data,
        received_at=received_at,
        deduplication_id=dedup or f"dedup-{dev_eui}-{f_cnt}",
        tags={"district": "altstadt"},
        radio=RadioMeta(
            rssi=rssi,
            snr=snr,
            gateway_id="0016c001ff10a235",
            spreading_factor=7,
            frequency=868100000,
            gateway_count=2,
        ),
    )


def make_reading(
    uplink: Uplink,
    field: str = "temperature",
    value: object = 21.5,
    unit: str | None = "°C",
    unit_code: str | None = "CEL",
) -> Reading:
    return Reading(
        dev_eui=uplink.dev_eui,
        device_name=uplink.device_name,
        message_type="air_quality",
        time=uplink.received_at,
        field=field,
        value=value,
        unit=unit,
        unit_code=unit_code,
        deduplication_id=uplink.deduplication_id,
        f_cnt=uplink.f_cnt,
        tags=dict(uplink.tags),
    )


@pytest.fixture(name="make_uplink")
def _make_uplink_fixture():
    """The :func:`make_uplink` builder (test modules cannot import conftest under importlib mode)."""
    return make_uplink


@pytest.fixture(name="make_reading")
def _make_reading_fixture():
    return make_reading


class EventFactory:
    """ChirpStack v4 integration events built from the ``chirpstack-api`` messages, as ChirpStack sends them.

    ``up(...)`` returns an ``UplinkEvent``; ``body(msg, "json"|"protobuf")`` serialises it exactly like
    ChirpStack's integrations (``MessageToJson`` camelCase JSON, or ``SerializeToString``).
    """

    APP = "3f1c1a34-5d6c-4b61-8c4e-2f9a3c1b7d20"

    def __init__(self) -> None:
        from chirpstack_api import integration

        self.integration = integration

    def device_info(self, dev_eui: str = "0004a30b001c0530", **tags: str):
        info = self.integration.DeviceInfo(
            tenant_id="52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
            tenant_name="Gelsenkirchen",
            application_id=self.APP,
            application_name="citynode",
            device_profile_id="0b8a9d0e-5a4f-4c8f-a1b2-33c4d5e6f708",
            device_profile_name="citynode-eu868",
            device_name=f"node-{dev_eui[-4:]}",
            dev_eui=dev_eui,
        )
        info.tags.update(tags or {"district": "altstadt"})
        return info

    def up(
        self,
        f_cnt: int = 1,
        data: bytes = b"",
        f_port: int = 10,
        dev_eui: str = "0004a30b001c0530",
        dedup: str | None = None,
        time: datetime = T0,
        rx: list[tuple[str, int, float]] | None = None,
        tags: dict[str, str] | None = None,
    ):
        from chirpstack_api import gw

        ev = self.integration.UplinkEvent(
            deduplication_id=dedup or f"5c8d0b6a-0000-4000-8000-{dev_eui[-4:]}{f_cnt:08d}",
            device_info=self.device_info(dev_eui, **(tags or {})),
            dev_addr="01ab23cd",
            adr=True,
            dr=5,
            f_cnt=f_cnt,
            f_port=f_port,
            confirmed=False,
            data=data,
        )
        ev.time.FromDatetime(time)
        for gw_id, rssi, snr in (
            rx if rx is not None else [("0016c001ff10a235", -87, 7.5), ("0016c001ff10a236", -110, -3.0)]
        ):
            ev.rx_info.append(
                gw.UplinkRxInfo(gateway_id=gw_id, uplink_id=1234, rssi=rssi, snr=snr, channel=0)
            )
        ev.tx_info.frequency = 868100000
        ev.tx_info.modulation.lora.bandwidth = 125000
        ev.tx_info.modulation.lora.spreading_factor = 7
        ev.tx_info.modulation.lora.code_rate = gw.CodeRate.CR_4_5
        return ev

    def join(self, dev_eui: str = "0004a30b001c0530", dedup: str = "join-1"):
        ev = self.integration.JoinEvent(
            deduplication_id=dedup, device_info=self.device_info(dev_eui), dev_addr="01ab23cd"
        )
        ev.time.FromDatetime(T0)
        return ev

    def status(
        self,
        dev_eui: str = "0004a30b001c0530",
        dedup: str = "status-1",
        margin: int = 12,
        battery_level: float = 87.5,
    ):
        ev = self.integration.StatusEvent(
            deduplication_id=dedup,
            device_info=self.device_info(dev_eui),
            margin=margin,
            battery_level=battery_level,
        )
        ev.time.FromDatetime(T0)
        return ev

    def ack(self, dev_eui: str = "0004a30b001c0530", dedup: str = "ack-1"):
        ev = self.integration.AckEvent(
            deduplication_id=dedup,
            device_info=self.device_info(dev_eui),
            queue_item_id="q1",
            acknowledged=True,
            f_cnt_down=3,
        )
        ev.time.FromDatetime(T0)
        return ev

    def txack(self, dev_eui: str = "0004a30b001c0530", downlink_id: int = 99):
        ev = self.integration.TxAckEvent(
            downlink_id=downlink_id,
            device_info=self.device_info(dev_eui),
            queue_item_id="q1",
            f_cnt_down=3,
            gateway_id="0016c001ff10a235",
        )
        ev.time.FromDatetime(T0)
        return ev

    def log(
        self,
        dev_eui: str = "0004a30b001c0530",
        code: str = "UPLINK_CODEC",
        description: str = "TypeError: data is undefined",
    ):
        ev = self.integration.LogEvent(
            device_info=self.device_info(dev_eui),
            level=self.integration.LogLevel.Value("ERROR"),
            code=self.integration.LogCode.Value(code),
            description=description,
        )
        ev.context["deduplication_id"] = "5c8d0b6a"
        ev.time.FromDatetime(T0)
        return ev

    @staticmethod
    def body(message, encoding: str = "json") -> bytes:
        from google.protobuf import json_format

        if encoding == "json":
            return json_format.MessageToJson(message).encode()
        return message.SerializeToString()

    @staticmethod
    def topic(message, kind: str) -> str:
        info = message.device_info
        return f"application/{info.application_id}/device/{info.dev_eui}/event/{kind}"


@pytest.fixture
def events() -> EventFactory:
    return EventFactory()


def air_quality_payload(temperature: float = 21.5) -> bytes:
    """A real citynode air_quality payload from the gateway codec."""
    from gateway.contract import codec

    return codec.encode_uplink(
        "air_quality",
        {
            "temperature": temperature,
            "relative_humidity": 45.2,
            "pressure": 1013.2,
            "gas_resistance": 120000,
            "pm1_0": 3.1,
            "pm2_5": 5.4,
            "pm10": 9.8,
            "battery": 3.71,
        },
    )


@pytest.fixture(name="aq_payload")
def _aq_payload():
    return air_quality_payload


# ------------------------------------------------------------------------------------------ mosquitto


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca(directory: Path, host: str = "localhost") -> dict[str, Path]:
    """A throw-away CA and a server certificate for ``host`` and 127.0.0.1, written as PEM files."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "citynode test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key_pem(srv_key))
    return files


class Mosquitto:
    """A real mosquitto broker: ``port`` is anonymous plain MQTT, ``tls_port`` needs TLS and a password."""

    username = "gateway"
    password = "s3cret-for-tests"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port()
        self.tls = make_ca(directory)
        self.conf = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        passwd = directory / "passwd"
        passwd.write_text("")
        subprocess.run(
            [
                shutil.which("mosquitto_passwd") or "mosquitto_passwd",
                "-b",
                str(passwd),
                self.username,
                self.password,
            ],
            check=True,
            capture_output=True,
        )
        self.conf.write_text(
            # run as root (CI): stay root, so the broker can read the 0700 pytest directory
            f"user {getpass.getuser()}\nper_listener_settings true\n"
            f"persistence true\npersistence_location {directory}/\n"
            f"max_queued_messages 200000\nmax_inflight_messages 50\n"
            f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\n"
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"listener {self.tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
            f"cafile {self.tls['ca']}\ncertfile {self.tls['cert']}\nkeyfile {self.tls['key']}\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = _time.monotonic() + 15
        while _time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()} (log {self.log})")
            try:
                socket.create_connection((self.host, self.port), 0.2).close()
                socket.create_connection((self.host, self.tls_port), 0.2).close()
                return
            except OSError:
                _time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory) -> Iterator[Mosquitto]:
    """A real mosquitto for the whole session (plain + TLS/password listeners). Fails if it is missing."""
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed (make sysdeps installs it)", pytrace=False)
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


def wait_until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fails with ``what`` after ``timeout`` s (a deadlock guard, not a timing check)."""
    deadline = _time.monotonic() + timeout
    while not predicate():
        if _time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        _time.sleep(0.02)


@pytest.fixture(name="wait_until")
def _wait_until_fixture():
    return wait_until


@pytest.fixture
def own_mosquitto(tmp_path) -> Iterator[Mosquitto]:
    """A broker for one test only (tests that restart or stop it)."""
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(name="free_port")
def _free_port_fixture():
    return free_port


# --------------------------------------------------------------- the ChirpStack API simulator (provisioning)

CHIRPSTACK_TOKEN = "test-api-token"


@pytest.fixture
def sim() -> Iterator[ChirpStackSimulator]:
    """The ChirpStack API simulator in-process on a free port (empty but for ChirpStack's default tenant)."""
    with ChirpStackSimulator(token=CHIRPSTACK_TOKEN) as server:
        yield server


@pytest.fixture
def client(sim: ChirpStackSimulator) -> Iterator[ChirpStackClient]:
    """A ChirpStack API client connected to :func:`sim` with its token."""
    with ChirpStackClient(sim.address, CHIRPSTACK_TOKEN, timeout=5.0) as cs:
        yield cs


PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"  # the machine's PostgreSQL, trust auth


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema; its DSN (search_path set) is yielded, the schema dropped afterwards."""
    import uuid

    import psycopg

    name = f"citynode_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{name}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")
