"""What running unattended needs: alerts (Apprise), the exchange-calendar schedule of a service,
systemd notifications, and the health/metrics/status HTTP port."""
