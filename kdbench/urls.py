"""Database URLs fit to print: the one place a password in a storage URL is masked (Optuna
storages, the cross-host Job claims, MLflow stores)."""

from __future__ import annotations

#: Server databases (their URLs may hold a password); SQLite and journal files hold none.
RDB_SCHEMES = ("postgresql", "mysql")


def display_url(url: str) -> str:
    """A storage URL fit to print or log: its password, if any, masked."""
    if url.split(":", 1)[0].split("+", 1)[0] not in RDB_SCHEMES:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is reported where it is opened
        return url.split("@", 1)[-1]
