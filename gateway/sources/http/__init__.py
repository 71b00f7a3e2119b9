"""What the HTTP adapters share: the client, authentication and multipart bodies."""
