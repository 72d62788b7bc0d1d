"""The store: SQLite (aiosqlite, WAL) behind one repository object per aggregate."""

from nxg_mqtt.store.db import Database, open_database
from nxg_mqtt.store.store import Store, open_store

__all__ = ["Database", "Store", "open_database", "open_store"]
