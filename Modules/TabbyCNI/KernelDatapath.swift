import Glibc
import TabbyCore
import TabbyNetlink

/// Calico's datapath in the kernel, through rtnetlink (REFERENCE.md section 7):
///
/// - a veth pair, host side `cali…` (MAC ee:ee:ee:ee:ee:ee) in the plugin's own namespace, pod
///   side `CNI_IFNAME` created directly inside the pod's namespace;
/// - in the pod: the addresses as /32 and /128, `169.254.1.1` on-link and the default route
///   through it (IPv6: through the host side's link-local address);
/// - on the host: a /32 (/128) route per address through the veth, tagged with Tabby's route
///   protocol, and the veth's `proxy_arp`, `forwarding`, `route_localnet` sysctls (IPv6:
///   `forwarding`, `accept_ra=0`). Only per-interface sysctls: the node's global settings belong
///   to the operator (and to tabbyd).
///
/// Requires CAP_NET_ADMIN in both namespaces. Work inside the pod's namespace goes through a
/// socket created there (a socket stays bound to its namespace), so no thread switches
/// namespaces except briefly, on a dedicated thread, to create it.
public struct KernelDatapath: PodDatapath {
    /// The namespace that holds the host side; nil (the plugin's case) means the caller's own.
    /// Test labs and the conformance kit use a node namespace they created.
    public let hostNamespacePath: String?

    public init(hostNamespacePath: String? = nil) {
        self.hostNamespacePath = hostNamespacePath
    }

    public func attach(_ attachment: PodAttachment) throws(DatapathError) {
        let host = try hostSocket()
        let namespaceFD: Int32
        do {
            namespaceFD = try NetworkNamespace.openFD(path: attachment.namespacePath)
        } catch {
            throw .namespaceUnavailable(path: attachment.namespacePath, reason: "\(error)")
        }
        defer { close(namespaceFD) }
        let pod: RouteSocket
        do {
            pod = try RouteSocket.open(inNamespaceAt: attachment.namespacePath)
        } catch {
            throw .namespaceUnavailable(path: attachment.namespacePath, reason: "\(error)")
        }
        // The interface the runtime asked for must not exist yet (CNI: ADD fails if it does).
        if (try? pod.link(named: attachment.interfaceName)) != nil {
            throw .interfaceExists(name: attachment.interfaceName, namespace: attachment.namespacePath)
        }
        // A host veth of this name is left from a killed ADD of the same pod: replace it.
        do {
            _ = try host.deleteLink(named: attachment.hostInterface)
            try host.createVeth(
                name: attachment.hostInterface, peerName: attachment.interfaceName, peerNamespaceFD: namespaceFD,
                mtu: attachment.mtu, mac: CalicoNaming.hostMAC, peerMAC: attachment.podMAC)
        } catch {
            if error.errno == EEXIST {
                throw .interfaceExists(name: attachment.interfaceName, namespace: attachment.namespacePath)
            }
            throw .kernel("\(error)")
        }
        do {
            try configureHost(attachment, socket: host)
            try configurePod(attachment, socket: pod)
        } catch {
            _ = try? host.deleteLink(named: attachment.hostInterface)
            throw error
        }
    }

    func configureHost(_ attachment: PodAttachment, socket: RouteSocket) throws(DatapathError) {
        let name = attachment.hostInterface
        do {
            guard let link = try socket.link(named: name) else {
                throw DatapathError.kernel("host interface \(name) vanished after it was created")
            }
            let hasIPv6 = attachment.addresses.contains { $0.family == .v6 }
            var settings = [
                ("net.ipv4.conf.\(name).proxy_arp", "1"),
                ("net.ipv4.neigh.\(name).proxy_delay", "0"),
                ("net.ipv4.conf.\(name).forwarding", "1"),
                ("net.ipv4.conf.\(name).route_localnet", "1"),
            ]
            if hasIPv6 {
                settings += [("net.ipv6.conf.\(name).accept_ra", "0"), ("net.ipv6.conf.\(name).forwarding", "1")]
            }
            if let hostNamespacePath {
                let frozen = settings
                try NetworkNamespace.run(path: hostNamespacePath) {
                    for (key, value) in frozen { try Sysctl.set(key, value) }
                }
            } else {
                for (key, value) in settings { try Sysctl.set(key, value) }
            }
            try socket.setLink(index: link.index, up: true, mtu: nil, mac: nil, name: nil, masterIndex: nil)
            for address in attachment.addresses {
                try socket.addRoute(
                    Route(
                        destination: CIDR(network: address, prefixLength: address.bitWidth), gateway: nil,
                        outputIndex: link.index, scope: .link),
                    replace: true)
            }
        } catch let error as DatapathError {
            throw error
        } catch {
            throw .kernel("\(error)")
        }
    }

    func configurePod(_ attachment: PodAttachment, socket: RouteSocket) throws(DatapathError) {
        do {
            guard let link = try socket.link(named: attachment.interfaceName) else {
                throw DatapathError.kernel("\(attachment.interfaceName) did not appear in \(attachment.namespacePath)")
            }
            try socket.setLink(index: link.index, up: true, mtu: nil, mac: nil, name: nil, masterIndex: nil)
            for address in attachment.addresses {
                try socket.addAddress(
                    InterfaceAddress(address, prefixLength: address.bitWidth, noDAD: address.family == .v6),
                    index: link.index, replace: true)
            }
            if attachment.addresses.contains(where: { $0.family == .v4 }) {
                let gateway = CalicoNaming.ipv4Gateway
                try socket.addRoute(
                    Route(
                        destination: CIDR(network: gateway, prefixLength: 32), gateway: nil,
                        outputIndex: link.index, scope: .link),
                    replace: true)
                try socket.addRoute(
                    Route(
                        destination: CIDR("0.0.0.0/0")!, gateway: gateway,
                        outputIndex: link.index, scope: .universe),
                    replace: true)
            }
            if attachment.addresses.contains(where: { $0.family == .v6 }) {
                try socket.addRoute(
                    Route(
                        destination: CIDR("::/0")!,
                        gateway: CalicoNaming.ipv6Gateway, outputIndex: link.index, scope: .universe),
                    replace: true)
            }
        } catch let error as DatapathError {
            throw error
        } catch {
            throw .kernel("\(error)")
        }
    }

    public func detach(hostInterface: String) throws(DatapathError) {
        do {
            _ = try hostSocket().deleteLink(named: hostInterface)
        } catch {
            throw .kernel("\(error)")
        }
    }

    public func verify(_ attachment: PodAttachment) throws(DatapathError) -> [String] {
        var problems: [String] = []
        let host = try hostSocket()
        do {
            guard let link = try host.link(named: attachment.hostInterface) else {
                return ["host interface \(attachment.hostInterface) does not exist"]
            }
            if link.kind != "veth" {
                problems.append("\(attachment.hostInterface) is a \(link.kind ?? "?"), not a veth")
            }
            if !link.isUp { problems.append("\(attachment.hostInterface) is down") }
            let routes = try host.routes(family: .ipv4) + host.routes(family: .ipv6)
            for address in attachment.addresses {
                let destination = CIDR(network: address, prefixLength: address.bitWidth)
                if !routes.contains(where: { $0.destination == destination && $0.outputIndex == link.index }) {
                    problems.append("no host route to \(destination) through \(attachment.hostInterface)")
                }
            }
        } catch {
            throw .kernel("\(error)")
        }
        let pod: RouteSocket
        do {
            pod = try RouteSocket.open(inNamespaceAt: attachment.namespacePath)
        } catch {
            return problems + ["network namespace \(attachment.namespacePath) cannot be opened: \(error)"]
        }
        do {
            guard let link = try pod.link(named: attachment.interfaceName) else {
                return problems + ["\(attachment.interfaceName) does not exist in \(attachment.namespacePath)"]
            }
            if link.mac != attachment.podMAC {
                problems.append(
                    "\(attachment.interfaceName) has MAC \(link.mac.map(\.description) ?? "none"), expected \(attachment.podMAC)"
                )
            }
            let addresses = try pod.addresses(index: link.index, family: nil).map(\.address.address)
            for address in attachment.addresses where !addresses.contains(address) {
                problems.append("\(attachment.interfaceName) does not have \(address)")
            }
            if attachment.addresses.contains(where: { $0.family == .v4 }) {
                let routes = try pod.routes(family: .ipv4, protocol: nil)
                if !routes.contains(where: {
                    $0.destination.prefixLength == 0 && $0.gateway == CalicoNaming.ipv4Gateway
                }) {
                    problems.append("no default route through \(CalicoNaming.ipv4Gateway) in the pod")
                }
            }
        } catch {
            throw .kernel("\(error)")
        }
        return problems
    }

    public func hostInterfaces() throws(DatapathError) -> [String] {
        do {
            return try hostSocket().links().filter { $0.kind == "veth" && $0.name.hasPrefix("cali") }.map(\.name)
        } catch {
            throw .kernel("\(error)")
        }
    }

    func hostSocket() throws(DatapathError) -> RouteSocket {
        do {
            if let hostNamespacePath { return try RouteSocket.open(inNamespaceAt: hostNamespacePath) }
            return try RouteSocket()
        } catch {
            throw .kernel("cannot open a netlink socket: \(error)")
        }
    }
}
