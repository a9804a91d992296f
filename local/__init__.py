"""The local stack: callme on one machine, with no AWS account and no Docker.

An embedded DynamoDB (moto's server, in-process, journaled to disk), the tables created from
template.yaml, the API served by the real Lambda handler, and the real dispatcher handler invoked
at every minute boundary as EventBridge Scheduler would.
"""
