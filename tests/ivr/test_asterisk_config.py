"""`callcenter asterisk-config --out DIR` and `callcenter ivr prompts`, run as the CLI: the files
parse as Asterisk config, hold the contexts, queues and AMI user, and the bridge's event filter
keeps everything the tracker needs from the recorded IVR call."""

from __future__ import annotations

import re
import shutil
import wave
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from callcenter.auth import service as auth_service
from callcenter.calls.tracker import CallTracker
from callcenter.cli import app
from ivr import prompts
from tests.calls.test_tracker import timed_events
from tests.conftest import make_user

runner = CliRunner()


def parse_asterisk_config(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Sections and their `key => value` / `key = value` lines, as Asterisk's config parser reads
    them (comments after `;`); anything else fails the test."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(?<!\\);.*$", "", raw).strip()
        if not line or re.fullmatch(r"#(try)?include\s+\S+", line):
            continue
        if match := re.fullmatch(r"\[([^\]]+)\](\(.*\))?", line):
            sections.append((match.group(1), []))
            continue
        match = re.fullmatch(r"([^=]+?)\s*=>?\s*(.*)", line)
        assert match and sections, f"line {number} is not Asterisk config: {raw!r}"
        sections[-1][1].append((match.group(1), match.group(2)))
    return sections


@pytest.fixture
def generated(services, settings, tmp_path, monkeypatch):
    for name, value in {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url, "DATA_DIR": str(settings.data_dir),
                        "SECRET_KEY": "test-secret-key-not-for-production", "AMI_USER": "bridge", "AMI_SECRET": "s3cret-for-tests"}.items():
        monkeypatch.setenv(name, value)
    make_user(services, "agent", username="wangfang", display_name="王芳", sip_extension="8001")
    lina = make_user(services, "agent", username="lina", display_name="李娜", sip_extension="8002")
    with services.db.session_scope() as session:
        user = auth_service.update_user(session=session, user_id=lina.id, changes={"queues": ["hotline", "emergency"], "queue_penalty": 2})
        auth_service.set_sip_secret(user=user, secret="lina-sip-secret", sealer=services.sealer)
    result = runner.invoke(app, ["asterisk-config", "--out", str(tmp_path), "--agi-host", "10.0.0.5",
                                 "--ami-permit", "127.0.0.1/255.255.255.255", "--ami-permit", "10.0.0.7/255.255.255.255"])
    assert result.exit_code == 0, result.output
    assert "s3cret-for-tests" not in result.output
    for name in ("manager.conf", "pjsip.conf"):  # secrets: their owner only
        assert (tmp_path / name).stat().st_mode & 0o077 == 0
    return {path.name: path.read_text(encoding="utf-8") for path in tmp_path.iterdir()}


def test_the_files_parse_and_hold_contexts_queues_and_the_ami_user(generated):
    assert set(generated) == {"extensions.conf", "queues.conf", "manager.conf", "pjsip.conf", "http.conf", "rtp.conf",
                              "cdr.conf", "cel.conf", "cel_custom.conf", "modules.conf", "logger.conf"}
    parsed = {name: parse_asterisk_config(text) for name, text in generated.items()}

    contexts = dict(parsed["extensions.conf"])
    assert {"from-elders-ivr", "from-elders", "agents", "hotline-transfer", "hotline-outbound"} <= set(contexts)
    ivr = [value for key, value in contexts["from-elders-ivr"]]
    assert ivr[0].startswith("12349,1,")
    steps = "\n".join(ivr)
    for script in ("ivr", "survey", "afterhours"):
        assert f"AGI(agi://10.0.0.5:4573/{script})" in steps
    # the AGI step is followed by the queue: a FastAGI server that does not answer leaves the caller on the way to it
    agi_step = next(i for i, v in enumerate(ivr) if "/ivr)" in v)
    assert "Queue(${IVR_QUEUE}" in ivr[agi_step + 2]
    # callbacks and care calls ring the elder OUTBOUND_RING_SECONDS (default 40) before counting as not answered
    assert [value for _, value in contexts["hotline-outbound"]][1] == "n,Dial(PJSIP/${EXTEN}@trunk,40)"

    queues = dict(parsed["queues.conf"])
    assert {"general", "hotline", "emergency"} <= set(queues)
    assert dict(queues["hotline"])["strategy"] == "rrmemory"
    assert "PJSIP/8001,0,王芳" in generated["queues.conf"].split("[emergency]")[0]
    assert "PJSIP/8002,2,李娜" in generated["queues.conf"].split("[emergency]")[1]
    for name in ("hotline", "emergency"):
        options = dict(queues[name])
        assert (options["setinterfacevar"], options["autofill"], options["ringinuse"]) == ("yes", "yes", "no")

    manager = dict(parsed["manager.conf"])
    user = manager["bridge"]
    assert ("secret", "s3cret-for-tests") in user
    assert [v for k, v in user if k == "deny"] == ["0.0.0.0/0.0.0.0"]
    assert [v for k, v in user if k == "permit"] == ["127.0.0.1/255.255.255.255", "10.0.0.7/255.255.255.255"]
    assert dict(user)["read"] == "call,agent,dialplan,agi,system" and "system" not in dict(user)["write"]
    assert dict(manager["general"])["timestampevents"] == "yes"
    assert dict(manager["general"])["bindaddr"] == "0.0.0.0"  # 10.0.0.7 must reach it; the user's permits limit who

    pjsip = parsed["pjsip.conf"]
    templates = dict(pjsip)
    assert ("allow", "ulaw,alaw") in templates["agent-phone"] and ("webrtc", "yes") in templates["agent-softphone"]
    assert ("rtp_timeout", "30") in templates["agent-phone"] and ("qualify_frequency", "15") in templates["agent-contact"]
    # 李娜 has a SIP secret: the web softphone, with that password; 王芳 a desk phone
    assert "[8002](agent-softphone)" in generated["pjsip.conf"] and "[8001](agent-phone)" in generated["pjsip.conf"]
    auths = {name: dict(lines) for name, lines in pjsip if ("type", "auth") in lines}
    assert auths["8002-auth"]["password"] == "lina-sip-secret" and len(auths["8001-auth"]["password"]) >= 20
    assert "type = identify" not in generated["pjsip.conf"]  # no TRUNK_HOST: no trunk (nothing to match)
    http = dict(dict(parse_asterisk_config(generated["http.conf"]))["general"])
    assert (http["enabled"], http["bindport"]) == ("yes", "8088") and "tlsenable" not in http


def event_filter(manager_conf: str):
    """The eventfilter lines of manager.conf, evaluated as Asterisk documents it: with include
    filters, an event passes only if one includes it, and then no exclude filter matches it."""
    rules = []
    for criteria, expression in re.findall(r"^eventfilter\(((?:\w+\([^)]*\),?)+)\)[ \t]*=[ \t]*(.*)$", manager_conf, re.M):
        fields = dict(re.findall(r"(\w+)\(([^)]*)\)", criteria))
        rules.append((fields.get("action", "include"), fields.get("name"), fields.get("header"), expression.strip()))

    def matches(rule, message):
        _, name, header, expression = rule
        if name and message.event != name:
            return False
        return not header or re.search(expression, message.get(header) or "") is not None

    def passes(message) -> bool:
        if not any(matches(r, message) for r in rules if r[0] == "include"):
            return False
        return not any(matches(r, message) for r in rules if r[0] == "exclude")

    return passes


def test_the_event_filter_drops_noise_and_keeps_what_the_tracker_reads(generated):
    passes = event_filter(generated["manager.conf"])
    events = timed_events("ivr")
    kept = [(at, m) for at, m in events if passes(m)]
    dropped = {m.event for _, m in events if not passes(m)}
    assert "Newexten" in dropped and not any(m.event == "Newexten" for _, m in kept)
    assert {m.get("Variable") for _, m in kept if m.event == "VarSet"} <= {"IVR_ROUTE", "QUEUE_PRIO", "ELDER_ID", "SURVEY_SCORE",
                                                                          "CC_AGENT"}
    assert any(m.event == "VarSet" for _, m in events if not passes(m))  # other VarSets go

    def outcome(stream):
        tracker = CallTracker()
        ended = {}
        for at, message in stream:
            ended |= {c.call.linkedid: replace(c.call, channels=set()) for c in tracker.apply(message, at) if c.kind == "call.ended"}
        return ended

    assert len(kept) < len(events) / 2
    assert outcome(kept) == outcome(events)  # the same calls, routes, priorities, scores, agents


def test_prompts_are_listed_for_recording(services, settings, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    result = runner.invoke(app, ["ivr", "prompts"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == len(prompts.PROMPTS)
    assert lines[0].startswith("12349/welcome.wav\t您好，这里是12349养老服务热线。")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (scripts/test installs it)")
def test_placeholder_recordings_are_synthesized(services, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    result = runner.invoke(app, ["ivr", "prompts", "--synthesize", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for prompt in prompts.PROMPTS.values():
        with wave.open(str(tmp_path / f"{prompt.file}.wav")) as sound:
            assert (sound.getframerate(), sound.getnchannels(), sound.getsampwidth()) == (8000, 1, 2)
            assert sound.getnframes() / 8000 > 0.5  # seconds of speech


def test_settings_change_ports_codecs_tls_and_the_trunk(tmp_path, monkeypatch):
    """Only settings change the files: AMI_PORT / AMI_BIND, SIP codecs and port, the WebSocket's
    TLS certificate, the RTP range and the carrier's trunk (matched by its address)."""
    for name, value in {"AMI_PORT": "15038", "AMI_BIND": "10.0.0.2", "AMI_SECRET": "s3cret", "SIP_CODECS": "alaw",
                        "SIP_PORT": "5070", "ASTERISK_TLS_CERT": "/etc/asterisk/keys/pbx.pem",
                        "ASTERISK_TLS_KEY": "/etc/asterisk/keys/pbx.key", "RTP_PORT_START": "30000", "RTP_PORT_END": "30999",
                        "TRUNK_HOST": "203.0.113.9", "DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["asterisk-config", "--out", str(tmp_path / "conf")])
    assert result.exit_code == 0, result.output
    files = {path.name: path.read_text(encoding="utf-8") for path in (tmp_path / "conf").iterdir()}
    manager = dict(dict(parse_asterisk_config(files["manager.conf"]))["general"])
    assert (manager["port"], manager["bindaddr"]) == ("15038", "10.0.0.2")
    http = dict(dict(parse_asterisk_config(files["http.conf"]))["general"])
    assert (http["tlsenable"], http["tlsbindaddr"], http["tlscertfile"]) == ("yes", "0.0.0.0:8089", "/etc/asterisk/keys/pbx.pem")
    assert "protocol = wss" in files["pjsip.conf"] and "bind = 0.0.0.0:5070" in files["pjsip.conf"]
    assert "allow = alaw\n" in files["pjsip.conf"] and "match = 203.0.113.9" in files["pjsip.conf"]
    assert "rtpstart = 30000" in files["rtp.conf"] and "rtpend = 30999" in files["rtp.conf"]


def test_runs_in_an_empty_folder_without_a_database(tmp_path, monkeypatch):
    """No database yet (a deployer preparing the PBX first): the settings and the menu file's
    defaults, no agents, and nothing left behind but the files asked for."""
    for name in ("DATABASE_URL", "AMI_SECRET", "DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["asterisk-config", "--out", "pbx"])
    assert result.exit_code == 0, result.output
    assert "no database" in result.output and "agents: none" in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pbx"]  # no data/ folder, no database file
    assert "[hotline]" in (tmp_path / "pbx" / "queues.conf").read_text(encoding="utf-8")
    assert re.search(r"^secret = \S{20,}$", (tmp_path / "pbx" / "manager.conf").read_text(encoding="utf-8"), re.M)
    assert "secret" not in result.output.replace("AMI_SECRET", "").replace("a new secret", "")
