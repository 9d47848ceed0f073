"""Settings from the environment and `.env`, with embedded defaults under `./data/`.

Nothing here is logged: `Settings.__repr__` hides the secret, and the secret key file is
created with mode 0600.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_AUDIT_RETENTION_DAYS = 180  # six months: the shortest audit retention the settings accept


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="where the embedded defaults live")
    database_url: str | None = None
    database_timeout_seconds: int = Field(default=15, ge=3, description="PostgreSQL: a connection attempt, or a "
                                          "connection whose network went silent, fails after this long")
    redis_url: str | None = None
    secret_key: SecretStr | None = None

    ami_host: str | None = None
    ami_port: int = 5038
    ami_user: str | None = None
    ami_secret: SecretStr | None = None

    short_abandon_seconds: int = Field(default=5, description="abandons within this many seconds are short abandons")
    service_level_seconds: int = Field(default=15, description="T of the service level: answered within T s (GB/T 33358-2016)")
    service_level_target: float = Field(default=0.8, description="the wallboard alerts when the last hour falls below this")
    long_wait_alert_seconds: int = Field(default=60, description="the wallboard alerts when a caller waits longer")
    simulator_calls_per_minute: float = 4.0

    # How the console's buttons map onto the dialplan (see README, "Asterisk dialplan the console uses").
    queue_name: str = Field(default="hotline", description="the queue agents join when they go ready")
    agent_interface: str = Field(default="PJSIP/{extension}", description="queue member interface of an agent (its "
                                 "device state tells the queue whether the agent is on a call)")
    agent_phone: str = Field(default="PJSIP/{extension}", description="the agent's phone, rung first for a callback")
    transfer_context: str = Field(default="hotline-transfer", description="Redirect target context: exten = agent or queue")
    outbound_context: str = Field(default="hotline-outbound", description="Originate context: exten = number to dial")
    hotline_caller_id: str = Field(default="12349", description="caller ID shown to elders we call back")
    outbound_ring_seconds: int = Field(default=40, ge=5, le=300, description="a callback or care call rings the elder's "
                                       "phone this long before it counts as not answered (the outbound Dial's timeout)")
    wrapup_seconds: int = Field(default=30, description="after a call the agent is paused this long (0: never)")
    ami_command_timeout: float = Field(default=5.0, description="how long the web waits for the bridge to act")
    live_ping_seconds: float = Field(default=5.0, gt=0, description="the web's live-event subscription, silent this long, "
                                     "is PINGed, and replaced when Redis does not answer as long again (a half-open link)")
    events_prefix: str = Field(default="hotline", pattern=r"^[A-Za-z0-9_.-]{1,40}$",
                               description="prefix of the Redis pub/sub channel names: pub/sub ignores the database "
                                           "number, so deployments sharing one Redis server need different prefixes")

    # Web softphone (JsSIP). Unset: agents use their desk phones.
    sip_ws_url: str | None = Field(default=None, description="Asterisk's SIP-over-WebSocket URL, e.g. wss://pbx:8089/ws")
    sip_domain: str | None = Field(default=None, description="SIP domain of agent accounts (default: the ws host)")

    # Asterisk as `callcenter asterisk-config` writes it (README, "Connecting a real Asterisk").
    ami_bind: str | None = Field(default=None, description="manager.conf bindaddr (default: loopback when only "
                                                            "loopback is permitted, else 0.0.0.0)")
    sip_codecs: str = Field(default="ulaw,alaw", pattern=r"^[a-z0-9]+(,[a-z0-9]+)*$",
                            description="codecs offered to agents' phones and the trunk (no opus in a stock Asterisk)")
    sip_port: int = Field(default=5060, description="PJSIP UDP port (desk phones and the trunk)")
    sip_rtp_timeout: int = Field(default=30, description="hang up a call whose phone sent no media this long (a closed "
                                                         "browser tab leaves no zombie call)")
    asterisk_http_bind: str = Field(default="0.0.0.0", description="Asterisk's HTTP server (the softphones' WebSocket)")
    asterisk_http_port: int = Field(default=8088, description="ws://…:PORT/ws (plain, for a LAN without TLS)")
    asterisk_tls_cert: Path | None = Field(default=None, description="certificate (PEM) for wss://…:ASTERISK_TLS_PORT/ws")
    asterisk_tls_key: Path | None = Field(default=None, description="its private key (PEM)")
    asterisk_tls_port: int = Field(default=8089, description="wss:// port when a certificate is set")
    rtp_port_start: int = Field(default=10000, description="Asterisk's RTP port range (open it in the firewall)")
    rtp_port_end: int = Field(default=20000)
    trunk_host: str | None = Field(default=None, description="the carrier's SIP host or IP delivering 12349 "
                                                             "(matched by `identify`, dialled for callbacks)")
    asterisk_log_dir: Path | None = Field(
        default=None, description="Asterisk's log folder (its STATE_DIR/log, /var/log/asterisk): the bridge reads "
                                  "queue_log and cel-custom/hotline.csv there to record the calls of an outage")

    # FastAGI server (ivr/): Asterisk's dialplan runs AGI(agi://IVR_HOST:IVR_PORT/ivr).
    ivr_host: str = Field(default="127.0.0.1", description="where the FastAGI server listens")
    ivr_port: int = Field(default=4573, description="FastAGI port (Asterisk's default)")
    ivr_menu_file: Path | None = Field(default=None, description="the IVR menu and business hours (default: ivr/menu.toml)")

    # Provider mobile pages (/m/): the dispatch SMS carries a signed login link to PUBLIC_URL.
    public_url: str = Field(default="http://127.0.0.1:8000", description="how phones reach this site, for SMS links")
    provider_link_minutes: int = Field(default=30, ge=1, description="a login link in an SMS (dispatch, visitor) works this long, once")
    provider_session_hours: int = Field(default=12, ge=1, description="a provider staff member's or a visitor's sign-in lasts this long")
    upload_max_bytes: int = Field(default=5 * 1024 * 1024, description="largest photo a provider may upload")
    # Request bodies (callcenter/bodylimit.py): every route takes at most body_max_bytes; the two
    # upload routes (the elders' import, a provider's completion photo) their file's limit plus the form around it.
    body_max_bytes: int = Field(default=1024 * 1024, description="largest request body of an ordinary route (413 above it)")
    import_max_bytes: int = Field(default=20 * 1024 * 1024, description="largest CSV/XLSX file the elders' import takes")

    # Notifications (callcenter/notify): the gateway of each channel, retries. Secrets are SecretStr (never shown).
    sms_gateway: Literal["outbox", "tencent", "smpp"] = Field(
        default="outbox", description="outbox: nothing leaves (the demo); tencent: Tencent Cloud SMS; smpp: a carrier's SMSC")
    sms_sign_name: str = Field(default="12349", description="the SMS signature (签名) registered with the provider")
    sms_template_ids: dict[str, str] = Field(default_factory=dict, description="tencent: each notification kind's approved "
                                             "template id, as JSON {\"order_dispatched_elder\": \"1234567\", …}")
    tencent_sms_secret_id: str | None = None
    tencent_sms_secret_key: SecretStr | None = None
    tencent_sms_app_id: str | None = Field(default=None, description="the SmsSdkAppId of the SMS application")
    tencent_sms_region: str = "ap-guangzhou"
    tencent_sms_endpoint: str = Field(default="https://sms.tencentcloudapi.com", description="scheme://host of the API")
    smpp_host: str | None = None
    smpp_port: int = 2775
    smpp_system_id: str | None = None
    smpp_password: SecretStr | None = None
    smpp_system_type: str = ""
    smpp_source_addr: str = Field(default="12349", description="the sender number the SMSC allows us")
    smpp_receipt_wait_seconds: float = Field(default=5.0, ge=0, description="how long a send waits for its delivery receipt "
                                             "(later ones are read by the periodic receipt poll)")
    wechat_gateway: Literal["outbox", "mp"] = Field(default="outbox", description="mp: WeChat Official Account template messages")
    wechat_app_id: str | None = None
    wechat_app_secret: SecretStr | None = None
    wechat_template_ids: dict[str, str] = Field(default_factory=dict, description="each kind's WeChat template id (JSON)")
    wechat_api_url: str = "https://api.weixin.qq.com"
    notify_max_attempts: int = Field(default=5, ge=1, description="a message failing this many times (transient errors) is failed")
    notify_retry_seconds: list[int] = Field(default=[30, 120, 600, 1800], min_length=1,
                                            description="the wait after the 1st, 2nd … failed attempt (the last repeats)")

    # Retention (README, "Privacy"): the worker's daily purge removes what is older than this.
    retention_call_days: int = Field(default=1095, ge=1, description="call records (with their legs) are kept this long")
    retention_recording_days: int = Field(default=180, ge=1, description="recordings under RECORDINGS_DIR are kept this long")
    retention_audit_days: int = Field(default=365, description="audit log entries are kept this long (at least 180: six months)")
    recordings_dir: Path | None = Field(default=None, description="where Asterisk's MixMonitor writes recordings (its "
                                        "spool/monitor, /var/spool/asterisk/monitor); unset: no recordings are purged")

    city_area_code: str = Field(default="0411", description="area code for landlines dialled without one")
    timezone: str = "Asia/Shanghai"

    # Security (README, "Security settings").
    password_hash_time_cost: int = Field(default=3, ge=1, le=20, description="argon2id passes for new password hashes")
    password_hash_memory_kib: int = Field(default=65536, ge=1024, le=4 * 1024 * 1024,
                                          description="argon2id memory for new password hashes (KiB; 65536 = 64 MiB)")
    session_max_age_seconds: int = Field(default=12 * 3600, ge=60, description="a hotline user's sign-in lasts this long "
                                         "(logout, a password change or a deactivation end it at once)")
    cookie_secure: bool | None = Field(default=None, description="cookies only over HTTPS (default: on when PUBLIC_URL is https)")
    login_free_failures: int = Field(default=3, ge=1, description="wrong passwords for one account from one address (or "
                                     "known device) before each further attempt must wait")
    login_backoff_seconds: int = Field(default=2, ge=1, description="the first wait; each further failure doubles it")
    login_backoff_max_seconds: int = Field(default=15 * 60, ge=1, description="the longest wait")
    login_account_limit: int = Field(default=10, ge=1, description="wrong passwords for one account from devices that never "
                                     "signed in to it, before those devices must wait (its known devices never do)")
    login_address_limit: int = Field(default=100, ge=1, description="wrong passwords from one address (any account, unknown "
                                     "devices) before it must wait: high enough for a shift of agents behind one NAT")
    login_window_seconds: int = Field(default=3600, ge=60, description="failures are forgotten this long after the last one")
    login_device_days: int = Field(default=180, ge=1, description="a browser stays a known device of its accounts this long")

    @model_validator(mode="after")
    def _secure_cookies_follow_public_url(self) -> "Settings":
        if self.cookie_secure is None:
            self.cookie_secure = self.public_url.lower().startswith("https://")
        return self

    @field_validator("retention_audit_days")
    @classmethod
    def _audit_kept_six_months(cls, days: int) -> int:
        if days < MIN_AUDIT_RETENTION_DAYS:
            raise ValueError(f"RETENTION_AUDIT_DAYS={days} is too short: audit logs must be kept at least "
                             f"{MIN_AUDIT_RETENTION_DAYS} days (six months)")
        return days

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'hotline.sqlite3').resolve()}"

    @cached_property
    def secret(self) -> bytes:
        """The secret key: from SECRET_KEY, else generated once into data/secret_key."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return _read_or_create_secret(self.data_dir / "secret_key")


def _read_or_create_secret(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_bytes().strip()


def get_settings() -> Settings:
    return Settings()
