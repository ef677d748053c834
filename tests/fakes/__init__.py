"""Stand-ins for the services a test does not run: each speaks the real
service's contract (HTTP routes, workflow updates, published facts) and
nothing more. Production packages hold no fakes."""
