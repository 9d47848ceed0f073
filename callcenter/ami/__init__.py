"""Asterisk Manager Interface: the wire protocol and an asyncio client. Knows nothing of calls."""
