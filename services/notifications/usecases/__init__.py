"""The notifications use cases, one module per concern; `service.NotificationService` is all of them."""
