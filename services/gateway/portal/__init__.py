"""The parents' portal: server-rendered pages in the parent's language.
`apply` (home and the application), `signin` (sign-in, activation, single
sign-on), `cabinet` (the signed-in parent's own), `family` (the family's
copy of its data, erasure), `open_queue` (the anonymised queue and the
figures, open to all), `events` (the event catalogue); `pages` holds what
they share (dependencies, rendering)."""
from services.gateway.portal import apply, cabinet, events, family, open_queue, signin

routers = (apply.router, signin.router, cabinet.router, family.router, open_queue.router, events.router)
