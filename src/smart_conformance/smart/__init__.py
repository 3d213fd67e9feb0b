"""Client side of SMART App Launch: discovery, authorization request, token exchange, id_token validation."""
