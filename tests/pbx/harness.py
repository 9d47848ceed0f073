"""The real-PBX tier's parts: a real Asterisk 22 (`../shared/asterisk`) configured by exactly what
`callcenter asterisk-config` writes (run as the CLI, files used verbatim) plus test-only caller
contexts in `extensions_custom.conf` (which the generated dialplan includes), our own processes
(`callcenter ami`, `callcenter ivr`) started against it, and a small blocking AMI client with
which tests play the callers (Originate, DTMF, hang-up) and read Asterisk's own view."""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from callcenter.ami.protocol import FrameParser, Message, encode_action

REPO = Path(__file__).resolve().parents[2]
ASTERISK_DIR = Path(os.environ.get("ASTERISK_DIR", REPO.parent / "shared" / "asterisk"))
RUN_ASTERISK = ASTERISK_DIR / "run-asterisk"
RUN_CLI = ASTERISK_DIR / "run-asterisk-cli"
CLI = [sys.executable, "-c", "from callcenter.cli import app; app()"]

# The elder's side of a test call: an extension `elder` in the trunk's contexts (pbx_config adds
# it to the generated context of the same name). Originate `Local/elder@from-elders-ivr` into
# `from-elders-ivr,12349`: the `;1` half, whose Uniqueid is the call's Linkedid and whose context is
# the trunk's, runs the hotline's dialplan, as a trunk's channel would; the `;2` half is the elder:
# once the IVR answers it waits CALLER_DELAY seconds, presses CALLER_KEYS, then makes a sound
# until it is hung up or the test presses more keys (AMI PlayDTMF on it).
ELDER_STEPS = """exten => elder,1,Answer()
 same => n,Wait(${IF($["${CALLER_DELAY}" = ""]?1:${CALLER_DELAY})})
 same => n,ExecIf($["${CALLER_KEYS}" != ""]?SendDTMF(${CALLER_KEYS},250))
 same => n,Playtones(440/300,0/300)
 same => n,Wait(3600)
"""
def elder_call(*, call_id: str, number: str, name: str = "", keys: str = "", delay: float = 1,
               context: str = "from-elders-ivr") -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The AMI Originate of a call from an elder (ELDER_STEPS): (its Variable headers, its other
    fields), for the tests' and the benchmarks' AMI clients alike."""
    variables = [("Variable", f"CALLER_KEYS={keys}"), ("Variable", f"CALLER_DELAY={delay}")]
    fields = {"Channel": f"Local/elder@{context}", "Context": context, "Exten": "12349", "Priority": "1",
              "CallerID": f'"{name}" <{number}>' if name else number, "Async": "true", "Timeout": "30000",
              "ChannelId": call_id, "OtherChannelId": f"{call_id}.elder"}
    return variables, fields


CALLER_CONTEXT = ("; Test-only: the elders' side of calls originated by the real-PBX tests.\n"
                  + "".join(f"[{context}]\n{ELDER_STEPS}\n" for context in ("from-elders-ivr", "from-elders")))


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing_runtime_libraries() -> list[str]:
    """Shared libraries Asterisk or its modules cannot find (scripts/test installs them)."""
    binaries = [str(ASTERISK_DIR / "sbin" / "asterisk"), *map(str, (ASTERISK_DIR / "modules").glob("*.so"))]
    env = {**os.environ, "LD_LIBRARY_PATH": str(ASTERISK_DIR / "lib")}
    output = subprocess.run(["ldd", *binaries], capture_output=True, text=True, env=env).stdout
    return sorted({line.split("=>")[0].strip() for line in output.splitlines() if "not found" in line})


def pbx_environment(*, database_url: str, redis_url: str, secret_key: str, data_dir: Path, events_prefix: str,
                    ports: dict[str, int], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment our processes and `asterisk-config` run with: one deployment."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AMI_", "SIP_", "ASTERISK_", "IVR_"))}
    env.update({
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "SECRET_KEY": secret_key, "DATA_DIR": str(data_dir),
        "EVENTS_PREFIX": events_prefix, "AMI_HOST": "127.0.0.1", "AMI_PORT": str(ports["ami"]), "AMI_USER": "hotline-bridge",
        "AMI_SECRET": "pbx-tier-secret", "AMI_BIND": "127.0.0.1", "SIP_PORT": str(ports["sip"]),
        "ASTERISK_HTTP_BIND": "127.0.0.1", "ASTERISK_HTTP_PORT": str(ports["http"]), "IVR_HOST": "127.0.0.1",
        "IVR_PORT": str(ports["agi"]), "RTP_PORT_START": str(ports["rtp"]), "RTP_PORT_END": str(ports["rtp"] + 198),
        "SIP_WS_URL": f"ws://127.0.0.1:{ports['http']}/ws", "SIP_DOMAIN": "127.0.0.1", "SIP_RTP_TIMEOUT": "8",
        "PYTHONUNBUFFERED": "1",
        # Our processes run this checkout's code (the one under test), whatever the interpreter has
        # installed: a worktree tested with another checkout's venv would otherwise run that one's.
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    })
    env.update(extra or {})
    return env


def pick_ports() -> dict[str, int]:
    return {"ami": free_tcp_port(), "sip": free_udp_port(), "http": free_tcp_port(), "tls": free_tcp_port(),
            "agi": free_tcp_port(), "rtp": random.randrange(20000, 60000, 200)}


class Asterisk:
    """One Asterisk, its configuration from `callcenter asterisk-config --out CONF` verbatim."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir, self.env = workdir, env
        self.conf, self.state = workdir / "conf", workdir / "state"
        self.process: subprocess.Popen | None = None
        self.generated: dict[str, str] = {}

    def configure(self) -> str:
        """Run `callcenter asterisk-config` (what a deployer runs) and add the test callers."""
        result = subprocess.run([*CLI, "asterisk-config", "--out", str(self.conf)], env=self.env, capture_output=True,
                                text=True, timeout=60, cwd=self.workdir)
        assert result.returncode == 0, result.stderr + result.stdout
        self.generated = {path.name: path.read_text(encoding="utf-8") for path in self.conf.iterdir()}
        (self.conf / "extensions_custom.conf").write_text(CALLER_CONTEXT, encoding="utf-8")
        return result.stdout

    def synthesize_prompts(self) -> None:
        """The IVR's prompts as placeholder recordings, where Asterisk looks for language zh."""
        target = self.state / "data" / "sounds" / "zh"
        result = subprocess.run([*CLI, "ivr", "prompts", "--synthesize", str(target)], env=self.env, capture_output=True,
                                text=True, timeout=120, cwd=self.workdir)
        assert result.returncode == 0, result.stderr + result.stdout

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "asterisk.out", "ab")
        self.process = subprocess.Popen([str(RUN_ASTERISK), str(self.conf), str(self.state)], stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"Asterisk exited: {(self.workdir / 'asterisk.out').read_text(errors='replace')[-2000:]}"
            if "fully booted" in self.cli("core waitfullybooted", timeout=5):
                return
            time.sleep(0.3)
        raise AssertionError("Asterisk did not boot in 30 s")

    def cli(self, *commands: str, timeout: float = 10) -> str:
        result = subprocess.run([str(RUN_CLI), str(self.state), *commands], capture_output=True, text=True, timeout=timeout)
        return result.stdout + result.stderr

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def queue_log(self) -> list[list[str]]:
        """Asterisk's queue_log: time|callid|queue|agent|event|data…"""
        path = self.state / "log" / "queue_log"
        return [line.split("|") for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []

    def cdr(self) -> list[list[str]]:
        path = self.state / "log" / "cdr-csv" / "Master.csv"
        return list(csv.reader(path.open(encoding="utf-8"))) if path.exists() else []


class Process:
    """One of our processes (`callcenter ami`, `callcenter ivr` …) with its output kept."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path):
        self.name, self.log_path = name, workdir / f"{name}.log"
        self.process = subprocess.Popen([*CLI, *args], env=env, cwd=workdir, stdout=open(self.log_path, "ab"),
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


class Ami:
    """A blocking AMI client for the tests (the callers' side and Asterisk's own view): not the
    bridge, which is `callcenter ami` in its own process."""

    def __init__(self, port: int, username: str, secret: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.parser = FrameParser()
        self.events: list[Message] = []
        self._serial = 0
        response = self.action("Login", Username=username, Secret=secret, Events="off")
        assert response.get("Response") == "Success", response

    def _read(self) -> list[Message]:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("AMI closed")
        return [m for m in self.parser.feed(data) if isinstance(m, Message)]

    def action(self, name: str, *pairs: tuple[str, str], **fields: str) -> Message:
        """Send an action, return its response (events of an event list land in self.events)."""
        self._serial += 1
        action_id = f"t{self._serial}"
        self.sock.sendall(encode_action(name, [("ActionID", action_id), *fields.items(), *pairs]))
        while True:
            for index, message in enumerate(self.events):
                if message.action_id == action_id and message.response:
                    return self.events.pop(index)
            self.events.extend(self._read())

    def originate_caller(self, *, call_id: str, number: str, name: str = "", keys: str = "", delay: float = 1,
                         context: str = "from-elders-ivr") -> Message:
        """An elder dials 12349 now. `call_id` is the Uniqueid of the hotline's side of the call,
        so the call's Linkedid; the elder's side is `<call_id>.elder`."""
        variables, fields = elder_call(call_id=call_id, number=number, name=name, keys=keys, delay=delay, context=context)
        return self.action("Originate", *variables, **fields)

    def press(self, call_id: str, digit: str) -> Message:
        """The elder presses a key."""
        return self.action("PlayDTMF", Channel=self.channel_of(f"{call_id}.elder"), Digit=digit, Duration="250")

    def hang_up_caller(self, call_id: str) -> Message:
        """The elder hangs up."""
        return self.action("Hangup", Channel=self.channel_of(f"{call_id}.elder"))

    def channel_of(self, uniqueid: str) -> str:
        """The channel name of a Uniqueid (CoreShowChannels)."""
        for channel in self.channels():
            if channel.get("Uniqueid") == uniqueid:
                return channel["Channel"]
        raise AssertionError(f"no channel {uniqueid}")

    def channels(self) -> list[Message]:
        self.events.clear()
        response = self.action("CoreShowChannels")
        assert response.get("Response") == "Success", response
        while not any(m.event == "CoreShowChannelsComplete" for m in self.events):
            self.events.extend(self._read())
        listed = [m for m in self.events if m.event == "CoreShowChannel" and m.action_id == response.action_id]
        self.events.clear()
        return listed

    def close(self) -> None:
        try:
            self.action("Logoff")
        except OSError:
            pass
        self.sock.close()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A throw-away certificate for Asterisk's WSS (ASTERISK_TLS_CERT / ASTERISK_TLS_KEY)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "pbx-cert.pem", folder / "pbx-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class SipTrunk:
    """The carrier's side of the trunk, as far as a test needs it: a UDP SIP peer on its own
    loopback address that sends an INVITE for 12349 (with an audio offer), ACKs the answer and
    hangs up with BYE."""

    def __init__(self, address: str, pbx_port: int):
        self.address, self.pbx_port = address, pbx_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.call_id = f"{random.getrandbits(64):x}@{address}"
        self.tag = f"{random.getrandbits(32):x}"
        self.to = ""
        self.cseq = 0

    def _send(self, method: str, body: str = "", *, extra: str = "") -> None:
        self.cseq += 1 if method != "ACK" else 0
        branch = f"z9hG4bK{random.getrandbits(48):x}"
        headers = [f"{method} sip:12349@127.0.0.1:{self.pbx_port} SIP/2.0",
                   f"Via: SIP/2.0/UDP {self.address}:{self.port};branch={branch};rport", "Max-Forwards: 70",
                   f'From: "Elder" <sip:{self.number}@{self.address}>;tag={self.tag}', f"To: {self.to or '<sip:12349@127.0.0.1>'}",
                   f"Call-ID: {self.call_id}", f"CSeq: {self.cseq} {method}", f"Contact: <sip:{self.number}@{self.address}:{self.port}>"]
        if extra:
            headers.append(extra)
        headers.append(f"Content-Length: {len(body.encode())}")
        self.sock.sendto(("\r\n".join(headers) + "\r\n\r\n" + body).encode(), ("127.0.0.1", self.pbx_port))

    def call(self, number: str) -> str:
        """INVITE and wait for the final answer; returns its status line (ACKed when 2xx)."""
        self.number = number
        sdp = "\r\n".join(["v=0", f"o=- 1 1 IN IP4 {self.address}", "s=trunk", f"c=IN IP4 {self.address}", "t=0 0",
                           f"m=audio {self.port + 2} RTP/AVP 0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
                           "a=rtpmap:101 telephone-event/8000", "a=sendrecv", ""])
        self._send("INVITE", sdp, extra="Content-Type: application/sdp")
        while True:
            data, _ = self.sock.recvfrom(65536)
            text = data.decode(errors="replace")
            status = text.split("\r\n", 1)[0]
            if not status.startswith("SIP/2.0 ") or " INVITE" not in _header(text, "CSeq"):
                continue
            code = int(status.split()[1])
            if code < 200:
                continue
            self.to = _header(text, "To")
            self._send("ACK")
            return status

    def hang_up(self) -> str:
        self._send("BYE")
        while True:
            text = self.sock.recvfrom(65536)[0].decode(errors="replace")
            if text.startswith("SIP/2.0 ") and " BYE" in _header(text, "CSeq"):
                return text.split("\r\n", 1)[0]

    def close(self) -> None:
        self.sock.close()


def _header(message: str, name: str) -> str:
    for line in message.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""
