"""Asterisk's side of FastAGI, scripted from the recorded dialogue (fixtures/ami-traces/fastagi-trace.txt):
the simulator's AGI peer (it connects to our server over TCP like Asterisk does and answers each
command the way Asterisk 22 does) with the recorded AGI environment and the keys a test gives it."""

from __future__ import annotations

from pathlib import Path

from callcenter.simulator.agi import AgiCall, keys_from, run_session

TRACE = Path(__file__).resolve().parents[1] / "fixtures" / "ami-traces" / "fastagi-trace.txt"
LINKEDID = "1795363563.20"  # the IVR call's Linkedid in ami-trace-ivr.txt (its AGI channel is .21)


def recorded_environment(script: str) -> dict[str, str]:
    """The AGI environment Asterisk sent for `script` (ivr or survey) in the recorded dialogue."""
    blocks, current = [], {}
    for line in TRACE.read_text(encoding="utf-8").splitlines():
        if "<< " not in line:
            continue
        text = line.split("<< ", 1)[1]
        if text.startswith("agi_"):
            name, _, value = text.partition(":")
            current[name] = value.strip()
        elif text.strip() == "" and current:
            blocks.append(current)
            current = {}
    return next(block for block in blocks if block["agi_network_script"] == script)


def recorded_dialogue(script: str) -> list[tuple[str, str]]:
    """(command, reply) pairs of `script` in the recording."""
    pairs, in_script, command = [], False, None
    for line in TRACE.read_text(encoding="utf-8").splitlines():
        if "agi_network_script:" in line:
            in_script = line.rsplit(":", 1)[1].strip() == script
        if not in_script:
            continue
        if ">> " in line:
            command = line.split(">> ", 1)[1]
        elif "<< 200" in line and command is not None:
            pairs.append((command, line.split("<< ", 1)[1]))
            command = None
    return pairs


async def dial(port: int, script: str = "ivr", *, keys: list[str | None] = (), caller: str | None = None,
               channel: dict[str, str] | None = None, hangup_at: str | None = None, env: dict | None = None,
               silent_after: int | None = None) -> AgiCall:
    """One call into the server's `script`, with the recorded environment (and `caller` as its
    caller ID). keys: what the caller does at each chance to press a key, in order (a prompt that
    takes keys, or a digit wait): press that digit, or nothing (None); then silence. channel:
    values of GET VARIABLE (CHANNEL(linkedid) is the recorded call's)."""
    recorded = recorded_environment(script if script == "survey" else "ivr")  # the two scripts recorded
    environment = {**recorded, **(env or {}), "agi_request": f"agi://127.0.0.1:{port}/{script}", "agi_network_script": script}
    if caller is not None:
        environment["agi_callerid"] = caller
    return await run_session("127.0.0.1", port, environment, keys=keys_from(list(keys)),
                             channel={"CHANNEL(linkedid)": LINKEDID, **(channel or {})}, hangup_at=hangup_at,
                             silent_after=silent_after)
