"""Feeds S3 notifications to the real Lambda handler, as the Lambda service would.

moto delivers the bucket's notifications to a standard queue; this thread receives them and calls
`lambda_enqueue.handler.handle_event` with each one. A handler error leaves the notification on
the queue, so it is retried, as Lambda's async retry would.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from lambda_enqueue.handler import handle_event


class LambdaInvoker:
    def __init__(self, sqs: Any, notification_queue_url: str, target_queue_url: str) -> None:
        self.sqs = sqs
        self.notification_queue_url = notification_queue_url
        self.target_queue_url = target_queue_url
        self.invocations = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lambda-invoker", daemon=True)

    def start(self) -> LambdaInvoker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def pump(self) -> int:
        """Deliver what is waiting now; returns how many notifications were handled."""
        handled = 0
        while True:
            response = self.sqs.receive_message(
                QueueUrl=self.notification_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = response.get("Messages", [])
            if not messages:
                return handled
            done: list[dict[str, str]] = []
            for message in messages:
                try:
                    handle_event(json.loads(message["Body"]), self.sqs, self.target_queue_url)
                except Exception:
                    self.errors += 1
                    continue
                self.invocations += 1
                handled += 1
                done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
            if done:
                self.sqs.delete_message_batch(QueueUrl=self.notification_queue_url, Entries=done)

    def _run(self) -> None:
        while not self._stop.wait(timeout=0.2):
            try:
                self.pump()
            except Exception:
                # moto busy or restarting: the Lambda service keeps polling, and so does this.
                self.errors += 1
