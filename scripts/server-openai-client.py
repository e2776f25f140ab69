#!/usr/bin/env python3
"""Drives a running `outcore serve` through the official `openai` Python client and checks the answers.

Usage: server-openai-client.py BASE_URL MODEL [API_KEY]
Exits non-zero with a message on the first failed check.
"""
import sys

import openai
from openai import OpenAI


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def main():
    base, model = sys.argv[1], sys.argv[2]
    key = sys.argv[3] if len(sys.argv) > 3 else "unused"
    client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)

    models = client.models.list()
    check(any(m.id == model for m in models.data), f"/v1/models lists {model}")

    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0, seed=1)
    answer = chat.choices[0].message.content
    print(f"  chat answer: {answer!r}")
    check(chat.object == "chat.completion" and chat.choices[0].message.role == "assistant", "chat response shape")
    check(len(answer.strip()) > 0, "chat answer is not empty")
    check(chat.choices[0].finish_reason in ("stop", "length"), "chat finish_reason")
    u = chat.usage
    check(u.prompt_tokens > 0 and 0 < u.completion_tokens <= 16 and u.total_tokens == u.prompt_tokens + u.completion_tokens,
          f"chat usage {u.prompt_tokens}+{u.completion_tokens}={u.total_tokens}")

    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0, seed=1,
                                            stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    streamed = "".join(pieces)
    print(f"  streamed answer: {streamed!r} in {len(pieces)} chunks")
    check(streamed == answer, "greedy streaming chat equals the non-streaming answer")
    check(finish == chat.choices[0].finish_reason, "streaming finish_reason")
    check(usage is not None and usage.completion_tokens == u.completion_tokens, "streaming usage chunk")

    comp = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
    text = comp.choices[0].text
    print(f"  completion: {text!r}")
    check(comp.object == "text_completion" and len(text) > 0, "completion response shape")
    check("paris" in text.lower(), "completion says Paris")
    check(comp.usage.completion_tokens <= 8, "completion respects max_tokens")

    comp2 = client.completions.create(model=model, prompt="1, 2, 3, 4, 5,", max_tokens=30, temperature=0, stop=[","])
    print(f"  stopped completion: {comp2.choices[0].text!r}")
    check(comp2.choices[0].text.strip() == "6" and comp2.choices[0].finish_reason == "stop", "stop sequence")

    try:
        client.chat.completions.create(model="no-such-model", messages=messages)
        check(False, "unknown model is rejected")
    except openai.NotFoundError as e:
        check(e.status_code == 404, "unknown model -> 404 NotFoundError")
    try:
        client.chat.completions.create(model=model, messages=messages, n=2)
        check(False, "n=2 is rejected")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and getattr(e, "param", None) == "n", "n=2 -> 400 naming param n")
    print("all openai client checks passed")


if __name__ == "__main__":
    main()
