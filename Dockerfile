# dlp-run, CPU build: `docker build -t dlp-run .`
#   docker run -p 8000:8000 -v $PWD/models:/models -v $PWD/adapters:/adapters dlp-run \
#     serve --host 0.0.0.0 --model /models/SmolLM2-135M-Instruct.Q4_1.gguf --adapter boolq=/adapters/boolq
# Models, adapters and routers are read from mounted volumes; nothing is downloaded at run time.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p dlp-cli && cp target/release/dlp-run /dlp-run

FROM debian:bookworm-slim
# libvulkan1 + Mesa: `--backend wgpu` on a GPU passed into the container (auto falls back to cpu).
RUN apt-get update && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 dlp
COPY --from=build /dlp-run /usr/local/bin/dlp-run
USER dlp
EXPOSE 8000
ENTRYPOINT ["dlp-run"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
