import Foundation
import TabbyCore

/// A CNI error: written to stdout as `{cniVersion, code, msg, details}` with a non-zero exit.
public struct CNIError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var details: String

    public init(code: Int, _ message: String, details: String = "") {
        self.code = code
        self.message = message
        self.details = details
    }

    // The codes of the CNI 1.1 specification.
    public static func incompatibleVersion(_ message: String) -> CNIError { CNIError(code: 1, message) }
    public static func unsupportedField(_ message: String) -> CNIError { CNIError(code: 2, message) }
    public static func unknownContainer(_ message: String) -> CNIError { CNIError(code: 3, message) }
    public static func invalidEnvironment(_ message: String) -> CNIError { CNIError(code: 4, message) }
    public static func ioFailure(_ message: String, details: String = "") -> CNIError {
        CNIError(code: 5, message, details: details)
    }
    public static func decodeFailure(_ message: String, details: String = "") -> CNIError {
        CNIError(code: 6, message, details: details)
    }
    public static func invalidConfig(_ message: String) -> CNIError { CNIError(code: 7, message) }
    public static func tryAgainLater(_ message: String, details: String = "") -> CNIError {
        CNIError(code: 11, message, details: details)
    }
    /// STATUS: the plugin cannot service ADD.
    public static func notAvailable(_ message: String, details: String = "") -> CNIError {
        CNIError(code: 50, message, details: details)
    }
    /// Tabby's own: no address could be found in the pools.
    public static func addressesExhausted(_ message: String) -> CNIError { CNIError(code: 100, message) }
    /// Tabby's own: what the runtime believes (prevResult) does not match Tabby's state.
    public static func checkFailed(_ message: String) -> CNIError { CNIError(code: 101, message) }

    public var description: String {
        details.isEmpty ? "CNI error \(code): \(message)" : "CNI error \(code): \(message) (\(details))"
    }

    /// The JSON the runtime reads from stdout.
    public func json(cniVersion: String) -> Data {
        var object: [String: JSONValue] = [
            "cniVersion": .string(cniVersion), "code": .int(code), "msg": .string(message),
        ]
        if !details.isEmpty { object["details"] = .string(details) }
        return Data(JSONValue.object(object).serialized().utf8)
    }
}
