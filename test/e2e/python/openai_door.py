"""Drives the gateway's /v1 door with Python's official `openai` package, as a user's app would.

Usage: openai_door.py <base_url of the first instance> <base_url of the second instance>
Prints one JSON object with what the client saw; the test that runs it judges it.
"""
import json
import sys

import openai
from openai import OpenAI

first = OpenAI(base_url=sys.argv[1], api_key="unused-in-open-mode", max_retries=0)
second = OpenAI(base_url=sys.argv[2], api_key="unused-in-open-mode", max_retries=0)
seen = {"version": openai.__version__}

seen["models"] = [model.id for model in first.models.list()]

raw = first.chat.completions.with_raw_response.create(
    model="simulated",
    messages=[{"role": "user", "content": "hi [tokens=20]"}],
    stream=True,
    stream_options={"include_usage": True},
)
chat = {"session_id": raw.headers.get("x-session-id"), "text": "", "finish_reason": None, "usage": None}
for chunk in raw.parse():
    if chunk.choices:
        chat["text"] += chunk.choices[0].delta.content or ""
        chat["finish_reason"] = chunk.choices[0].finish_reason or chat["finish_reason"]
    if chunk.usage:
        chat["usage"] = chunk.usage.completion_tokens
seen["chat_stream"] = chat

whole = first.chat.completions.create(
    model="simulated", messages=[{"role": "user", "content": "hi [tokens=12]"}]
)
seen["chat_whole"] = {"text": whole.choices[0].message.content, "object": whole.object}

text = ""
types = []
completed = None
for event in first.responses.create(model="simulated", input="hi [tokens=8]", stream=True):
    types.append(event.type)
    if event.type == "response.output_text.delta":
        text += event.delta
    if event.type == "response.completed":
        completed = event.response
retrieved = second.responses.retrieve(completed.id)
seen["responses"] = {
    "types": types,
    "text": text,
    "completed_text": completed.output_text,
    "retrieved_on_second": {"status": retrieved.status, "text": retrieved.output_text},
}

try:
    first.chat.completions.create(model="simulated", messages=[{"role": "wizard", "content": "x"}])
    seen["error"] = None
except openai.APIStatusError as error:
    seen["error"] = {"status": error.status_code, "type": error.type, "param": error.param}

print(json.dumps(seen))
