# Build a static binary, then run it as a non-root user on a minimal image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /consortium ./cmd/consortium

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /consortium /consortium
USER nonroot:nonroot
EXPOSE 8080
# The configuration is read from ./consortium.yaml when it exists: mount one
# at /etc/consortium/consortium.yaml. Without one, the built-in defaults and
# the providers of the environment (OPENAI_API_KEY, ...) are used. On
# 0.0.0.0 the proxy needs client keys (auth.keys) or auth.allow_open: true.
WORKDIR /etc/consortium
ENTRYPOINT ["/consortium", "serve", "--listen", "0.0.0.0:8080"]
