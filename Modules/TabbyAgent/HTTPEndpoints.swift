import NIOCore
import NIOHTTP1
import NIOPosix

/// `/liveness`, `/readiness` and `/metrics` on a loopback port of the node's namespace (Calico's
/// Felix serves the first two on 9099 and metrics on 9091). Loopback only: nothing is exposed
/// off the node.
public final class HTTPEndpoints: Sendable {
    let metrics: AgentMetrics
    let host: String
    let port: Int

    public init(metrics: AgentMetrics, host: String = "127.0.0.1", port: Int) {
        self.metrics = metrics
        self.host = host
        self.port = port
    }

    /// Binds and serves until the task is cancelled.
    public func run() async throws {
        let metrics = self.metrics
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(metrics: metrics))
                }
            }
            .bind(host: host, port: port).get()
        await withTaskCancellationHandler {
            try? await channel.closeFuture.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        // @unchecked: used only on its channel's event loop.
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let metrics: AgentMetrics
        var path = "/"

        init(metrics: AgentMetrics) { self.metrics = metrics }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): path = head.uri
            case .body: break
            case .end:
                let (status, body) = response(for: path)
                var headers = HTTPHeaders()
                headers.add(
                    name: "Content-Type", value: path == "/metrics" ? "text/plain; version=0.0.4" : "text/plain")
                headers.add(name: "Content-Length", value: String(body.utf8.count))
                headers.add(name: "Connection", value: "close")
                context.write(
                    wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                    promise: nil)
                context.write(
                    wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
            }
        }

        func response(for path: String) -> (HTTPResponseStatus, String) {
            switch path {
            case "/liveness":
                let (live, reason) = metrics.isLive
                return live ? (.ok, "live\n") : (.serviceUnavailable, "not live: \(reason)\n")
            case "/readiness":
                let (ready, reason) = metrics.isReady
                return ready ? (.ok, "ready\n") : (.serviceUnavailable, "not ready: \(reason)\n")
            case "/metrics": return (.ok, metrics.prometheusText)
            default: return (.notFound, "tabbyd serves /liveness, /readiness and /metrics\n")
            }
        }
    }
}
