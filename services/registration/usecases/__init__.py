"""Registration's use cases, one unit of work each, around the pure rules of
`services.registration.domain`: `drafts` (the application step by step and
its submission), `accounts` (activation, sign-in, sessions, the cabinet's
data), `imports` (accounts and applications moved from the old portal), `family`
(the family's own copy of what registration holds).
`context` holds what they share; `services.registration.service` composes
them into `RegistrationService`."""
