# gatehouse container image: a static binary on distroless, running as nonroot.
#   docker build -t gatehouse .
# The image writes nothing (audit lines go to standard output unless the
# config names a file on a volume), so it runs with a read-only root
# filesystem; the Helm chart (deploy/helm/gatehouse) and docker-compose.yml
# mount the config directory at /etc/gatehouse/config.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/gatehouse/gatehouse/cmd/gatehouse/app.Version=${VERSION}" \
      -o /out/gatehouse ./cmd/gatehouse

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gatehouse /usr/local/bin/gatehouse
# distroless' nonroot user, by number: Kubernetes can verify runAsNonRoot
# only for a numeric USER. The chart's securityContext names the same id.
USER 65532:65532
# 9190 admin, 9191 ext_authz, 9192 ext_proc, 9193 rate limit, 9194 xDS
EXPOSE 9190 9191 9192 9193 9194
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve"]
