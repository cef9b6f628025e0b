"""A real SMTP server for the tests (aiosmtpd), offering login, and the Airflow connection that
reaches it: what the notifiers send through."""

from __future__ import annotations

import email
import json
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

SMTP_LOGIN, SMTP_PASSWORD = "etl-mailer", "smtp-pass-9f3k2"


class Inbox:
    """aiosmtpd handler: keeps what it receives, and who logged in to send it."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        self.logins.append(session.auth_data.login.decode() if session.authenticated else "")
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.content, policy=default_policy) for e in self.envelopes]


def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        SMTP_LOGIN.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, auth_data=auth_data if ok else None)


def smtp_conn(port: int) -> str:
    """An smtp connection as the provider's hook reads it: plain SMTP, no SSL nor STARTTLS."""
    extra = {"disable_ssl": True, "disable_tls": True, "timeout": 5, "retry_limit": 0}
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "login": SMTP_LOGIN,
            "password": SMTP_PASSWORD,
            "extra": extra,
        }
    )


def start(port: int) -> tuple[Inbox, Controller]:
    """A server on 127.0.0.1:`port`; stop it with the controller."""
    handler = Inbox()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    return handler, controller
