"""Logger and metrics, created once for both functions."""

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service="callme")
metrics = Metrics(namespace="callme", service="callme")
