"""One client per protocol; each sends a prompt and fills a StreamTrace."""

from loadtest.clients.base import ChatClient, StreamTrace
from loadtest.clients.native import NativeClient
from loadtest.clients.openai_compatible import OpenAIClient
from loadtest.clients.runpod_queue import RunPodQueueClient

__all__ = ["ChatClient", "NativeClient", "OpenAIClient", "RunPodQueueClient", "StreamTrace"]
