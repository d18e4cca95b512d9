# Images of the session server and the cart sample. They hold one static binary each (plus
# the sample's catalogue), on an empty root filesystem: no base image is pulled, so they build
# on machines without any registry. bin/build-images.sh compiles the binaries and builds both.

FROM scratch AS session-server
COPY target/docker/session-server /session-server
# Where `session-server setup` keeps the sample's secrets: a volume mounted here takes this
# folder's owner, the image's user.
COPY --chown=65532:65532 samples/secrets /secrets
# The durable store's data directory (SESSION_DATA_DIR), likewise, and empty (.dockerignore
# leaves out its README): the server refuses a directory that holds anything else.
COPY --chown=65532:65532 samples/data /data
# Beyond loopback the server requires credentials (SESSION_AUTH_FILE), or SESSION_INSECURE=1.
ENV SESSION_LISTEN=0.0.0.0:9510 \
    SESSION_ADMIN_LISTEN=0.0.0.0:9540
EXPOSE 9510 9540
USER 65532:65532
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["/session-server", "health", "--addr", "http://127.0.0.1:9510"]
ENTRYPOINT ["/session-server"]

FROM scratch AS cart
COPY target/docker/cart /cart
COPY samples/cart /sample
ENV CART_LISTEN=0.0.0.0:9081 \
    CART_CATALOG=/sample \
    CART_SESSION_SERVER=http://session-server:9510
EXPOSE 9081
USER 65532:65532
ENTRYPOINT ["/cart"]
