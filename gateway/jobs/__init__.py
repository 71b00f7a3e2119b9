"""The job platform: the DB row is the truth, arq moves work, Redis pub/sub streams progress."""
