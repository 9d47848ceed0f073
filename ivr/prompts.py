"""The IVR's prompts: what each says (Chinese, as callers hear it) and the sound file Asterisk
plays for it (`STREAM FILE 12349/welcome`: sounds/<language>/12349/welcome.wav).

Texts can be changed in the menu file's `[prompts]` and by supervisors; the file names are
fixed, so a deployer records each file once (`callcenter ivr prompts` lists them) and where
espeak-ng is installed `callcenter ivr prompts --synthesize DIR` writes placeholder recordings.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path

SOUND_DIR = "12349"
SAMPLE_RATE = 8000  # what Asterisk's .wav format plays (16-bit mono)


@dataclass(frozen=True)
class Prompt:
    name: str
    file: str
    text: str
    purpose: str  # when it plays (shown to supervisors, in Chinese)


_DEFAULTS = [
    ("welcome", "您好，这里是12349养老服务热线。", "每通来电开头"),
    ("welcome_known", "您好，欢迎您再次来电，12349养老服务热线为您服务。", "来电号码在老人档案中"),
    ("menu", "助餐服务请按1，居家服务请按2，助医服务请按3，紧急求助请按9，人工服务请按0，或请不要挂机，直接为您转接人工。",
     "按键菜单"),
    ("invalid", "您的按键无效，请重新选择。", "按错键后，重听菜单前"),
    ("to_agent", "正在为您转接人工服务，请稍候。", "转人工排队前"),
    ("emergency", "正在为您紧急转接，请不要挂机。", "紧急求助或高风险老人，排队前"),
    ("closed", "现在是非工作时间。紧急求助请按9；需要我们上班后给您回电请按1；或请不要挂机，为您转接值班人员。",
     "非工作时间"),
    ("busy", "坐席正忙。需要我们稍后给您回电请按1；继续等待请按0。", "排队无人接听"),
    ("callback_saved", "已为您登记回电，工作人员会尽快给您回电。再见。", "已登记回电"),
    ("callback_no_number", "未能识别您的来电号码，无法登记回电，正在为您转接值班人员。", "无来电号码无法登记回电"),
    ("survey", "请您对本次服务进行评价：非常满意请按5，满意请按4，一般请按3，不满意请按2，非常不满意请按1。",
     "坐席挂机后的满意度评价"),
    ("survey_thanks", "感谢您的评价，祝您身体健康，再见。", "评价之后"),
    ("goodbye", "感谢您的来电，再见。", "未评价时结束"),
]
PROMPTS: dict[str, Prompt] = {name: Prompt(name, f"{SOUND_DIR}/{name.replace('_', '-')}", text, purpose)
                              for name, text, purpose in _DEFAULTS}


def texts(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Each prompt's text: the override where one is set, else the default."""
    overrides = overrides or {}
    return {name: (overrides.get(name) or prompt.text).strip() for name, prompt in PROMPTS.items()}


class SynthesisUnavailable(RuntimeError):
    pass


def synthesize(out_dir: Path, prompt_texts: dict[str, str], *, voice: str = "cmn") -> list[Path]:
    """Placeholder recordings of every prompt with espeak-ng, as 8 kHz 16-bit mono WAV files
    under `out_dir` (copy them to Asterisk's sounds/<language>/)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SynthesisUnavailable("espeak-ng is not installed (apt install espeak-ng)")
    written = []
    for name, prompt in PROMPTS.items():
        target = out_dir / f"{prompt.file}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        raw = subprocess.run([espeak, "-v", voice, "--stdout", prompt_texts[name]], check=True, capture_output=True,
                             timeout=60).stdout
        _write_8khz(raw, target)
        written.append(target)
    return written


def _write_8khz(wav_bytes: bytes, target: Path) -> None:
    """espeak-ng writes 22,050 Hz; Asterisk's .wav is 8 kHz: resample by linear interpolation."""
    import io

    with wave.open(io.BytesIO(wav_bytes)) as source:
        rate, width, channels = source.getframerate(), source.getsampwidth(), source.getnchannels()
        frames = source.readframes(source.getnframes())
    if width != 2 or channels != 1:
        raise SynthesisUnavailable(f"unexpected espeak-ng output: {width * 8}-bit, {channels} channels")
    samples = array("h", frames)
    count = int(len(samples) * SAMPLE_RATE / rate)
    out = array("h", bytes(2 * count))
    step = rate / SAMPLE_RATE
    for i in range(count):
        position = i * step
        left = int(position)
        right = min(left + 1, len(samples) - 1)
        fraction = position - left
        out[i] = int(samples[left] * (1 - fraction) + samples[right] * fraction)
    with wave.open(str(target), "wb") as sink:
        sink.setnchannels(1)
        sink.setsampwidth(2)
        sink.setframerate(SAMPLE_RATE)
        sink.writeframes(out.tobytes())
