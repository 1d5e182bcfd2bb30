"""Drop-in facades for code written against other libraries' APIs (see loop.compat.greenlet)."""
