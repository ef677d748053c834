"""HTTP contracts that two services share: the models of an internal API
that another service passes on to people (the gateway's JSON API)."""
