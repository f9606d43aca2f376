"""What happens after the server's 250: provider webhooks (`webhooks/`), the bounce mailbox (`bounces/`), all normalized to one `DeliveryEvent`."""
