"""copytrade: mirror a DhanHQ leader account's orders onto follower accounts."""

__version__ = "0.1.0"
