# standin in a small static image: built against musl, copied into an empty (scratch) image with nothing
# but the binary and a passwd entry, run as an unprivileged user. `standin probe` is the health check, since
# the image has no shell or curl.
#
#   docker build -t standin .
#   docker run --rm -p 8000:8000 standin
#
# Configuration: any flag as a STANDIN_* variable (`-e STANDIN_API_KEY=k1,k2`), or a JSON file mounted at
# /etc/standin/config.json with `-e STANDIN_CONFIG=/etc/standin/config.json`.

FROM rust:1-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update \
    && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin standin \
    && cp target/x86_64-unknown-linux-musl/release/standin /standin \
    && echo 'standin:x:65532:65532:standin:/:/standin' > /passwd

FROM scratch
COPY --from=build /standin /standin
COPY --from=build /passwd /etc/passwd
USER 65532:65532
# Inside a container the server must listen on every interface; the port is the seed's 8000.
ENV STANDIN_LISTEN=0.0.0.0:8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s --retries=3 CMD ["/standin", "probe"]
# SIGTERM starts the drain (in-flight streams finish, up to --shutdown-timeout-ms); exec form, so the
# server is PID 1 and receives it.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/standin"]
