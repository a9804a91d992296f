"""callme: an HTTP callback scheduler.

The domain package: task model and rules, trigger-time parsing, the DynamoDB repository
(the only module that talks to DynamoDB), the task service behind the API, and the dispatch
engine behind the dispatcher. Nothing here knows about Lambda events or reads os.environ.
"""
