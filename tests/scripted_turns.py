"""Scripted model turns in each provider's wire format, for tests that drive several rounds."""

from __future__ import annotations

import json
from typing import Any

from replay_server import Reply


def openai_sse(*payloads: dict[str, Any]) -> bytes:
    body = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)
    return body + b"data: [DONE]\n\n"


def openai_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-loop",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def openai_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-loop",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def openai_call_turn() -> bytes:
    """Text, then two calls whose arguments are split mid-key and mid-escape."""
    return openai_sse(
        openai_chunk({"role": "assistant", "content": "Let me "}),
        openai_chunk({"content": "check."}),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_calc",
                        "type": "function",
                        "function": {"name": "calculator", "arguments": ""},
                    }
                ]
            }
        ),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"expre'}}]}),
        openai_chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": 'ssion": "123 * 456"}'}}]}
        ),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_wx",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Os'},
                    }
                ]
            }
        ),
        openai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": 'lo \\u00e9\\"'}}]}),
        openai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": '"}'}}]}),
        openai_chunk({}, "tool_calls"),
        openai_usage(50, 20),
    )


def openai_text_turn(text: str = "123 * 456 = 56088, and Oslo is mild.") -> bytes:
    half = len(text) // 2
    return openai_sse(
        openai_chunk({"role": "assistant", "content": text[:half]}),
        openai_chunk({"content": text[half:]}),
        openai_chunk({}, "stop"),
        openai_usage(90, 12),
    )


def openai_refusal_turn(text: str = "", refusal: str = "I can\u2019t help with that.") -> bytes:
    """A refusal in delta.refusal, after ``text`` if given; the finish is a plain "stop"."""
    chunks = [openai_chunk({"role": "assistant", "content": text or None, "refusal": ""})]
    half = len(refusal) // 2
    chunks += [openai_chunk({"refusal": refusal[:half]}), openai_chunk({"refusal": refusal[half:]})]
    return openai_sse(*chunks, openai_chunk({}, "stop"), openai_usage(30, 9))


def openai_single_call(call_id: str, name: str, arguments: str) -> bytes:
    return openai_sse(
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                ]
            }
        ),
        openai_chunk({}, "tool_calls"),
    )


def anthropic_sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def anthropic_thinking_call_turn() -> bytes:
    return anthropic_sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_loop1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 40, "output_tokens": 1},
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "The user wants weather."},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01Wx",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Osl'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": 'o"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 30},
        },
        {"type": "message_stop"},
    )


def anthropic_text_turn(text: str = "It is 21 degrees in Oslo.") -> bytes:
    return anthropic_sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_loop2",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 80, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    )


def gemini_sse(*payloads: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(p).encode() + b"\r\n\r\n" for p in payloads)


def gemini_call_turn() -> bytes:
    return gemini_sse(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {
                                "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                                "thoughtSignature": "CpwCAdHtim9signature",
                            },
                            {
                                "functionCall": {
                                    "name": "calculator",
                                    "args": {"expression": "2 + 2"},
                                }
                            },
                        ],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 30,
                "candidatesTokenCount": 10,
                "totalTokenCount": 40,
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "gem-loop-1",
        },
    )


def gemini_text_turn(text: str = "Oslo is mild and 2 + 2 is 4.") -> bytes:
    return gemini_sse(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 60,
                "candidatesTokenCount": 8,
                "totalTokenCount": 68,
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "gem-loop-2",
        },
    )


def ollama_ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def ollama_call_turn() -> bytes:
    return ollama_ndjson(
        {
            "model": "llama3.2",
            "created_at": "2025-01-01T00:00:00Z",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
                ],
            },
            "done": False,
        },
        {
            "model": "llama3.2",
            "created_at": "2025-01-01T00:00:01Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 25,
            "eval_count": 9,
        },
    )


def ollama_text_turn(text: str = "Oslo: 21 degrees.") -> bytes:
    return ollama_ndjson(
        {
            "model": "llama3.2",
            "created_at": "2025-01-01T00:00:02Z",
            "message": {"role": "assistant", "content": text},
            "done": False,
        },
        {
            "model": "llama3.2",
            "created_at": "2025-01-01T00:00:03Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 50,
            "eval_count": 6,
        },
    )


def responses_sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def responses_call_turn() -> bytes:
    item = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_r1",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    done = {**item, "arguments": '{"city": "Oslo"}', "status": "completed"}
    response = {
        "id": "resp_1",
        "object": "response",
        "status": "in_progress",
        "model": "gpt-4.1",
        "output": [],
    }
    return responses_sse(
        {"type": "response.created", "sequence_number": 0, "response": response},
        {
            "type": "response.output_item.added",
            "sequence_number": 1,
            "output_index": 0,
            "item": item,
        },
        {
            "type": "response.function_call_arguments.delta",
            "sequence_number": 2,
            "item_id": "fc_1",
            "output_index": 0,
            "delta": '{"city": ',
        },
        {
            "type": "response.function_call_arguments.delta",
            "sequence_number": 3,
            "item_id": "fc_1",
            "output_index": 0,
            "delta": '"Oslo"}',
        },
        {
            "type": "response.function_call_arguments.done",
            "sequence_number": 4,
            "item_id": "fc_1",
            "output_index": 0,
            "arguments": '{"city": "Oslo"}',
        },
        {
            "type": "response.output_item.done",
            "sequence_number": 5,
            "output_index": 0,
            "item": done,
        },
        {
            "type": "response.completed",
            "sequence_number": 6,
            "response": {
                **response,
                "status": "completed",
                "output": [done],
                "usage": {"input_tokens": 20, "output_tokens": 7, "total_tokens": 27},
            },
        },
    )


def responses_text_turn(text: str = "Mild in Oslo.") -> bytes:
    message = {
        "type": "message",
        "id": "msg_2",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    response = {
        "id": "resp_2",
        "object": "response",
        "status": "in_progress",
        "model": "gpt-4.1",
        "output": [],
    }
    done = {
        **message,
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return responses_sse(
        {"type": "response.created", "sequence_number": 0, "response": response},
        {
            "type": "response.output_item.added",
            "sequence_number": 1,
            "output_index": 0,
            "item": message,
        },
        {
            "type": "response.output_text.delta",
            "sequence_number": 2,
            "item_id": "msg_2",
            "output_index": 0,
            "content_index": 0,
            "delta": text,
        },
        {
            "type": "response.output_item.done",
            "sequence_number": 3,
            "output_index": 0,
            "item": done,
        },
        {
            "type": "response.completed",
            "sequence_number": 4,
            "response": {
                **response,
                "status": "completed",
                "output": [done],
                "usage": {"input_tokens": 40, "output_tokens": 4, "total_tokens": 44},
            },
        },
    )


def turns(*bodies: bytes, content_type: str = "text/event-stream") -> list[Reply]:
    # Cut every turn mid-line, so no event arrives whole in one read.
    replies = []
    for body in bodies:
        chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
        replies.append(Reply(chunks=chunks, headers={"Content-Type": content_type}))
    # One more reply that fails loudly if the loop asks for a turn nobody scripted.
    replies.append(Reply(status=500, chunks=[b'{"error": {"message": "no more turns"}}']))
    return replies
