"""LLM providers against a real local OpenAI-compatible server, cassettes, config, and MCP sampling."""

from __future__ import annotations

import json
import time

import mcp_types as types
import pytest
from fake_openai import FakeOpenAI, Reply, Stream
from mcp.client.client import Client
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel

from builder.errors import InputError, LLMError, NotConfigured
from builder.llm import ChatMessage, LLMConfig, Usage, complete_json, make_provider, require_provider
from builder.llm.openai_compat import OpenAIProvider
from builder.llm.progress import StreamProgress, listening
from builder.llm.replay import RecordingProvider, ReplayProvider, request_hash
from builder.llm.sampling import SamplingProvider, supports_sampling

pytestmark = pytest.mark.anyio

MSGS = [
    ChatMessage(role="system", content="You plan tools."),
    ChatMessage(role="user", content="Plan a PDF tool"),
]


class Plan(BaseModel):
    name: str
    tools: list[str]


def provider(fake, **kw) -> OpenAIProvider:
    kw.setdefault("backoff_base_s", 0.01)
    return OpenAIProvider(model="m1", base_url=fake.base_url, api_key="k", timeout_s=5, **kw)


async def test_structured_output_sends_json_schema_and_returns_json(fake_openai):
    fake_openai.script(['{"name": "pdf", "tools": ["extract_text"]}'])
    p = provider(fake_openai)
    c = await p.complete(MSGS, json_schema=Plan.model_json_schema(), schema_name="Plan")
    assert json.loads(c.text) == {"name": "pdf", "tools": ["extract_text"]}
    sent = fake_openai.requests[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == Plan.model_json_schema()
    assert sent["model"] == "m1"
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert p.supports_response_format is True and p.supports_stream is True


async def test_rejected_response_format_falls_back_to_extraction_and_is_remembered(fake_openai):
    fake_openai.script(
        [
            Reply(status=400, text="response_format json_schema is not supported"),
            'Sure! Here it is:\n```json\n{"name": "pdf", "tools": ["a"]}\n```\nAnything else?',
            'Plan: {"name": "doc", "tools": []} -- done',
        ]
    )
    p = provider(fake_openai)
    first = await p.complete(MSGS, json_schema=Plan.model_json_schema(), schema_name="Plan")
    second = await p.complete(MSGS, json_schema=Plan.model_json_schema(), schema_name="Plan")
    assert json.loads(first.text) == {"name": "pdf", "tools": ["a"]}
    assert json.loads(second.text) == {"name": "doc", "tools": []}
    assert p.supports_response_format is False
    assert "response_format" in fake_openai.requests[0]
    # Both later requests went without response_format and carried the schema in the system prompt instead.
    for req in fake_openai.requests[1:]:
        assert "response_format" not in req
        assert "JSON schema" in req["messages"][0]["content"]
    assert fake_openai.calls == 3


async def test_a_400_that_also_fails_without_response_format_is_raised_not_remembered(fake_openai):
    fake_openai.script(
        [Reply(status=400, text="context too long"), Reply(status=400, text="context too long")]
    )
    p = provider(fake_openai)
    with pytest.raises(LLMError, match="HTTP 400 .*context too long"):
        await p.complete(MSGS, json_schema=Plan.model_json_schema())
    assert p.supports_response_format is None
    assert fake_openai.calls == 2


async def test_429_is_retried_honouring_retry_after_then_succeeds(fake_openai):
    fake_openai.script([Reply(status=429, headers={"Retry-After": "0.05"}), 503, "hello"])
    p = provider(fake_openai, max_retries=3)
    c = await p.complete(MSGS)
    assert c.text == "hello"
    assert fake_openai.calls == 3
    assert [(e.reason, e.attempt) for e in p.retry_log] == [("HTTP 429", 1), ("HTTP 503", 2)]
    assert p.retry_log[0].delay_s == pytest.approx(0.05)


async def test_500_until_retries_run_out_raises_llmerror(fake_openai):
    fake_openai.script([500, 500, 500])
    p = provider(fake_openai, max_retries=2)
    with pytest.raises(LLMError, match=r"HTTP 500 .* after 3 attempt"):
        await p.complete(MSGS)
    assert fake_openai.calls == 3


async def test_non_retryable_error_is_not_retried(fake_openai):
    fake_openai.script([401])
    p = provider(fake_openai, max_retries=3)
    with pytest.raises(LLMError, match="HTTP 401"):
        await p.complete(MSGS)
    assert fake_openai.calls == 1


async def test_unreachable_endpoint_raises_llmerror_naming_url(fake_openai):
    url = fake_openai.base_url
    fake_openai.stop()
    p = OpenAIProvider(model="m", base_url=url, timeout_s=2, max_retries=1, backoff_base_s=0.01)
    with pytest.raises(LLMError, match="unreachable after 2 attempt"):
        await p.complete(MSGS)


async def test_usage_counts_tokens_and_prices(fake_openai):
    fake_openai.script(["one two three", "four five"])
    p = provider(fake_openai, price_in_per_1k=1.0, price_out_per_1k=2.0)
    usage = Usage()
    for _ in range(2):
        usage.add(await p.complete(MSGS))
    prompt_words = len("You plan tools.".split()) + len("Plan a PDF tool".split())
    assert usage.calls == 2
    assert usage.prompt_tokens == 2 * prompt_words
    assert usage.completion_tokens == 5
    assert usage.cost_usd == pytest.approx((2 * prompt_words * 1.0 + 5 * 2.0) / 1000)


async def test_complete_json_reasks_with_error_then_succeeds(fake_openai):
    fake_openai.script(
        ['{"name": "pdf", "tools": "not a list"}', "I cannot do JSON today", '{"name":"pdf","tools":[]}']
    )
    usage = Usage()
    plan = await complete_json(provider(fake_openai), MSGS, Plan, usage=usage)
    assert plan == Plan(name="pdf", tools=[])
    assert usage.calls == 3
    second = fake_openai.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": '{"name": "pdf", "tools": "not a list"}'}
    assert "tools" in second[-1]["content"] and "valid array" in second[-1]["content"]
    assert "no JSON object" in fake_openai.requests[2]["messages"][-1]["content"]


async def test_complete_json_always_malformed_raises_with_last_error(fake_openai):
    fake_openai.script(["nope", "still nope", '{"name": 5}'])
    with pytest.raises(LLMError, match=r"no valid Plan in 3 attempt.*last error: .*tools: Field required"):
        await complete_json(provider(fake_openai), MSGS, Plan, usage=Usage())
    assert fake_openai.calls == 3


async def test_recording_then_replay_with_server_stopped(fake_openai, tmp_path):
    cassette = tmp_path / "c.jsonl"
    fake_openai.script(['{"name": "a", "tools": ["x"]}', "plain answer"])
    rec = RecordingProvider(provider(fake_openai), cassette)
    live_plan = await complete_json(rec, MSGS, Plan, usage=Usage())
    live_text = (await rec.complete([ChatMessage(role="user", content="hi")])).text
    fake_openai.stop()

    replay = make_provider(LLMConfig(provider="replay", cassette=cassette))
    assert isinstance(replay, ReplayProvider)
    usage = Usage()
    assert await complete_json(replay, MSGS, Plan, usage=usage) == live_plan
    assert (
        (await replay.complete([ChatMessage(role="user", content="hi")])).text == live_text == "plain answer"
    )
    assert usage.prompt_tokens > 0  # recorded usage comes back with the answer

    unknown = [ChatMessage(role="user", content="never asked")]
    with pytest.raises(LLMError) as err:
        await replay.complete(unknown)
    assert request_hash(unknown, None) in str(err.value) and str(cassette) in str(err.value)


async def test_replay_missing_cassette_and_corrupt_line_are_named(tmp_path):
    with pytest.raises(LLMError, match="does not exist"):
        ReplayProvider(tmp_path / "absent.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hash": "x", "request": {}, "response": {"text": "ok"}}\n{"oops": 1}\n')
    with pytest.raises(LLMError, match="line 2"):
        ReplayProvider(bad)


def test_nothing_configured_gives_none_and_a_how_to_message():
    cfg = LLMConfig.from_env({})
    assert make_provider(cfg) is None
    with pytest.raises(NotConfigured) as err:
        require_provider(cfg)
    msg = str(err.value)
    for needle in (
        "MCP_FOUNDRY_LLM_BASE_URL",
        "MCP_FOUNDRY_LLM_MODEL",
        "MCP_FOUNDRY_LLM_API_KEY",
        "OPENAI_API_KEY",
        "http://127.0.0.1:11434/v1",
        "MCP_FOUNDRY_LLM_CASSETTE",
    ):
        assert needle in msg


def test_env_config_selects_providers(tmp_path):
    p = make_provider(
        LLMConfig.from_env(
            {
                "MCP_FOUNDRY_LLM_BASE_URL": "http://127.0.0.1:9/v1",
                "MCP_FOUNDRY_LLM_MODEL": "qwen",
                "OPENAI_API_KEY": "sk-x",
            }
        )
    )
    assert isinstance(p, OpenAIProvider) and p.model == "qwen" and p.base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(InputError, match="MCP_FOUNDRY_LLM_MODEL"):
        make_provider(LLMConfig.from_env({"MCP_FOUNDRY_LLM_BASE_URL": "http://127.0.0.1:9/v1"}))
    with pytest.raises(InputError, match="MCP_FOUNDRY_LLM_PROVIDER: unknown provider 'gpt'"):
        LLMConfig.from_env({"MCP_FOUNDRY_LLM_PROVIDER": "gpt"})
    assert (
        make_provider(LLMConfig.from_env({"MCP_FOUNDRY_LLM_PROVIDER": "none", "OPENAI_API_KEY": "k"})) is None
    )
    rec = make_provider(
        LLMConfig.from_env({"OPENAI_API_KEY": "k", "MCP_FOUNDRY_LLM_CASSETTE": str(tmp_path / "r")})
    )
    assert isinstance(rec, RecordingProvider) and rec.model == "gpt-4o-mini"


def test_a_jobs_model_settings_travel_without_the_key_and_the_key_comes_from_the_worker():
    requester = LLMConfig.from_env({"MCP_FOUNDRY_LLM_BASE_URL": "http://127.0.0.1:9/v1",
                                    "MCP_FOUNDRY_LLM_MODEL": "qwen", "OPENAI_API_KEY": "sk-secret"})
    recorded = requester.for_job()
    assert recorded["provider"] == "openai" and recorded["model"] == "qwen" and recorded["api_key_set"] is True
    assert "sk-secret" not in json.dumps(recorded)
    worker = make_provider(LLMConfig.from_job(recorded, {"MCP_FOUNDRY_LLM_API_KEY": "sk-worker"}))
    assert isinstance(worker, OpenAIProvider) and worker.model == "qwen" and worker.base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(NotConfigured, match="started without one; keys never travel through the job store"):
        LLMConfig.from_job(recorded, {})
    keyless = LLMConfig.from_env({"MCP_FOUNDRY_LLM_BASE_URL": "http://127.0.0.1:9/v1", "MCP_FOUNDRY_LLM_MODEL": "m"})
    assert LLMConfig.from_job(keyless.for_job(), {}).model == "m"  # a keyless local endpoint needs none
    assert LLMConfig.from_env({}).for_job() is None  # no model: the worker's environment decides


def _sampling_server(via_session: bool = False) -> MCPServer:
    server = MCPServer("sampling-test")

    @server.tool()
    async def plan(request: str, ctx: Context) -> str:
        if not supports_sampling(ctx):
            return "NO-SAMPLING"
        usage = Usage()
        msgs = [ChatMessage(role="system", content="Be terse."), ChatMessage(role="user", content=request)]
        # A bare session (no related request) is what a background build holds after the tool call returned.
        sampler = SamplingProvider(ctx.session if via_session else ctx)
        result = await complete_json(sampler, msgs, Plan, usage=usage)
        return result.model_dump_json()

    return server


@pytest.mark.parametrize("via_session", [False, True], ids=["context", "session"])
async def test_sampling_provider_through_a_real_mcp_client(via_session):
    seen: list[types.CreateMessageRequestParams] = []

    async def sampling_callback(context, params: types.CreateMessageRequestParams):
        seen.append(params)
        if len(seen) == 1:
            return types.CreateMessageResult(
                role="assistant",
                content=types.TextContent(type="text", text="no json here"),
                model="client-m",
            )
        asked = params.messages[0].content.text
        text = f'Here: {{"name": "{asked}", "tools": ["t1"]}}'
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=text), model="m"
        )

    # Handshake-era protocol: the only one where a server may ask the client mid-call.
    async with Client(
        _sampling_server(via_session), sampling_callback=sampling_callback, mode="legacy"
    ) as client:
        result = await client.call_tool("plan", {"request": "pdf"})
    assert not result.is_error, result
    assert json.loads(result.content[0].text) == {"name": "pdf", "tools": ["t1"]}
    assert len(seen) == 2  # the first, unparsable answer was re-asked
    assert "Be terse." in seen[0].system_prompt and "JSON schema" in seen[0].system_prompt
    assert "no JSON object" in seen[1].messages[-1].content.text


async def test_supports_sampling_false_without_client_capability():
    async with Client(_sampling_server(), mode="legacy") as client:
        result = await client.call_tool("plan", {"request": "pdf"})
    assert result.content[0].text == "NO-SAMPLING"


async def test_supports_sampling_false_on_protocols_without_mid_call_requests():
    async def never(context, params):
        raise AssertionError("must not be asked")

    # The default negotiation picks 2026-07-28, where a server cannot ask the client mid-call.
    async with Client(_sampling_server(), sampling_callback=never) as client:
        result = await client.call_tool("plan", {"request": "pdf"})
    assert result.content[0].text == "NO-SAMPLING"


def test_sampling_provider_rejects_non_session_objects():
    with pytest.raises(
        LLMError, match="needs an MCP Context inside a request, or a ServerSession; got object"
    ):
        SamplingProvider(object())
    assert supports_sampling(object()) is False


# ---- slow models: a configurable timeout that only a stall trips ---------------------------------------------------

WORDS = " ".join(f"w{i}" for i in range(12))


async def test_a_slow_stream_completes_although_it_lasts_longer_than_the_timeout(fake_openai):
    # The old limit bounded the whole request; now only a gap longer than the timeout does.
    fake_openai.script([Stream(WORDS, gap_s=0.25)])  # 11 gaps: ~2.75 s in total, each gap well under 1 s
    seen: list[StreamProgress] = []
    p = OpenAIProvider(model="m1", base_url=fake_openai.base_url, timeout_s=1.0, max_retries=0)
    t = time.monotonic()
    with listening(seen.append):
        c = await p.complete(MSGS)
    elapsed = time.monotonic() - t
    assert c.text == WORDS and elapsed > 2 * p.timeout_s
    counts = [s.tokens for s in seen]
    assert counts[-1] == 12 and counts == sorted(counts) and len(set(counts)) == 12  # every token was reported
    assert seen[-1].chars == len(WORDS) and seen[-1].seconds > 2
    assert c.completion_tokens == 12 and c.prompt_tokens > 0  # the usage chunk at the end of the stream
    assert fake_openai.calls == 1


async def test_a_stalled_stream_fails_at_the_timeout_with_a_clear_message_and_is_not_retried(fake_openai):
    fake_openai.script([Stream(WORDS, stall_after=3, stall_s=4.0)])
    p = OpenAIProvider(model="m1", base_url=fake_openai.base_url, timeout_s=1.0, max_retries=3)
    t = time.monotonic()
    with pytest.raises(LLMError) as err:
        await p.complete(MSGS)
    assert time.monotonic() - t < 3.0  # failed at the stall, not when the server went on
    msg = str(err.value)
    assert "stalled: no token for 1 s after 3 token(s)" in msg and "MCP_FOUNDRY_LLM_TIMEOUT" in msg
    assert fake_openai.calls == 1 and p.retry_log == []


async def test_an_error_event_inside_a_stream_fails_the_request_with_the_endpoints_message(fake_openai):
    fake_openai.script([Stream(WORDS, error_after=4)])
    p = provider(fake_openai, max_retries=3)
    with pytest.raises(LLMError, match="reported an error while answering for model 'm1': the model failed mid-answer"):
        await p.complete(MSGS)
    assert fake_openai.calls == 1


async def test_an_endpoint_that_answers_whole_is_read_whole_and_no_longer_asked_to_stream():
    fake = FakeOpenAI(streams=False).start()
    try:
        fake.script(['{"name": "pdf", "tools": []}', "second"])
        p = provider(fake)
        c = await p.complete(MSGS, json_schema=Plan.model_json_schema(), schema_name="Plan")
        assert json.loads(c.text) == {"name": "pdf", "tools": []} and c.completion_tokens == 4
        assert p.supports_stream is False
        assert (await p.complete(MSGS)).text == "second"
        assert fake.requests[0]["stream"] is True and "stream" not in fake.requests[1]
    finally:
        fake.stop()


async def test_an_endpoint_refusing_to_stream_is_asked_again_without_streaming(fake_openai):
    fake_openai.script([Reply(status=400, text="stream is not supported by this server"), "whole"])
    p = provider(fake_openai)
    assert (await p.complete(MSGS)).text == "whole"
    assert p.supports_stream is False and "stream" not in fake_openai.requests[1]


async def test_an_unstreamed_answer_slower_than_the_timeout_fails_once_naming_the_setting():
    fake = FakeOpenAI(streams=False).start()
    try:
        fake.script([lambda body: time.sleep(2.5) or "late"])
        p = OpenAIProvider(model="m1", base_url=fake.base_url, timeout_s=1.0, max_retries=3, backoff_base_s=0.01)
        with pytest.raises(LLMError, match=r"no answer within 1 s .*MCP_FOUNDRY_LLM_TIMEOUT"):
            await p.complete(MSGS)
        assert fake.calls == 1  # a slow endpoint is not asked again: it would only be as slow again
    finally:
        fake.stop()


def test_the_llm_timeout_is_configured_by_its_variable_and_checked():
    base = {"MCP_FOUNDRY_LLM_BASE_URL": "http://127.0.0.1:9/v1", "MCP_FOUNDRY_LLM_MODEL": "qwen"}
    assert LLMConfig.from_env(base).timeout_s == 600
    p = make_provider(LLMConfig.from_env(base | {"MCP_FOUNDRY_LLM_TIMEOUT": "1800"}))
    assert isinstance(p, OpenAIProvider) and p.timeout_s == 1800
    for bad in ("soon", "0", "-5", "nan", "100000"):
        with pytest.raises(InputError) as err:
            LLMConfig.from_env(base | {"MCP_FOUNDRY_LLM_TIMEOUT": bad})
        assert err.value.field == "MCP_FOUNDRY_LLM_TIMEOUT" and "at most 86400" in str(err.value)
