import Foundation

// The JSON shapes of etcd's v3 gateway (grpc-gateway over etcdserverpb). Protobuf's JSON mapping
// writes int64 as strings, bytes as base64, and leaves out fields at their default (0, false, empty),
// so every response field is optional. Encoders and decoders convert snake_case.

/// An int64 field: a JSON string (what etcd writes) or a number.
struct EtcdInt64: Decodable, Sendable {
    var value: Int64

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self), let value = Int64(text) {
            self.value = value
        } else {
            self.value = try container.decode(Int64.self)
        }
    }
}

enum EtcdBytes {
    static func encode(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    static func decode(_ base64: String?) -> Data { base64.flatMap { Data(base64Encoded: $0) } ?? Data() }

    /// The end of the key range holding every key that starts with `prefix`: the prefix with its last
    /// byte below 0xff incremented (trailing 0xff bytes dropped); "\0" (to the end) when there is none.
    static func prefixRangeEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return Data(bytes).base64EncodedString()
            }
            bytes.removeLast()
        }
        return encode("\0")
    }

    /// `key` and `range_end` selecting every key under `prefix` (all keys for "").
    static func prefixRange(_ prefix: String) -> (key: String, rangeEnd: String) {
        prefix.isEmpty ? (encode("\0"), encode("\0")) : (encode(prefix), prefixRangeEnd(prefix))
    }
}

// MARK: Requests

struct EtcdRangeRequest: Encodable, Sendable {
    var key: String
    var rangeEnd: String?
    var limit: String?
    var revision: String?
    var countOnly: Bool?
}

struct EtcdPutRequest: Encodable, Sendable {
    var key: String
    var value: String
    var prevKv: Bool?
}

struct EtcdDeleteRangeRequest: Encodable, Sendable {
    var key: String
    var prevKv: Bool?
}

struct EtcdCompare: Encodable, Sendable {
    var key: String
    /// "CREATE" or "MOD".
    var target: String
    var result = "EQUAL"
    var createRevision: String?
    var modRevision: String?
}

struct EtcdRequestOp: Encodable, Sendable {
    var requestRange: EtcdRangeRequest?
    var requestPut: EtcdPutRequest?
    var requestDeleteRange: EtcdDeleteRangeRequest?
}

struct EtcdTxnRequest: Encodable, Sendable {
    var compare: [EtcdCompare]
    var success: [EtcdRequestOp]
    var failure: [EtcdRequestOp]
}

struct EtcdCompactionRequest: Encodable, Sendable {
    var revision: String
    var physical: Bool
}

struct EtcdAuthenticateRequest: Encodable, Sendable {
    var name: String
    var password: String
}

struct EtcdWatchRequest: Encodable, Sendable {
    struct Create: Encodable, Sendable {
        var key: String
        var rangeEnd: String
        var startRevision: String
        var prevKv: Bool
    }
    var createRequest: Create
}

// MARK: Responses

struct EtcdHeader: Decodable, Sendable {
    var revision: EtcdInt64?
}

struct EtcdKeyValue: Decodable, Sendable {
    var key: String?
    var value: String?
    var createRevision: EtcdInt64?
    var modRevision: EtcdInt64?

    var keyValue: KeyValue {
        KeyValue(
            key: String(decoding: EtcdBytes.decode(key), as: UTF8.self), value: EtcdBytes.decode(value),
            createRevision: createRevision?.value ?? 0, modRevision: modRevision?.value ?? 0)
    }
}

struct EtcdRangeResponse: Decodable, Sendable {
    var header: EtcdHeader?
    var kvs: [EtcdKeyValue]?
    var more: Bool?
}

struct EtcdPutResponse: Decodable, Sendable {
    var header: EtcdHeader?
    var prevKv: EtcdKeyValue?
}

struct EtcdDeleteRangeResponse: Decodable, Sendable {
    var header: EtcdHeader?
    var deleted: EtcdInt64?
    var prevKvs: [EtcdKeyValue]?
}

struct EtcdResponseOp: Decodable, Sendable {
    var responseRange: EtcdRangeResponse?
    var responsePut: EtcdPutResponse?
    var responseDeleteRange: EtcdDeleteRangeResponse?
}

struct EtcdTxnResponse: Decodable, Sendable {
    var header: EtcdHeader?
    var succeeded: Bool?
    var responses: [EtcdResponseOp]?
}

struct EtcdCompactionResponse: Decodable, Sendable {
    var header: EtcdHeader?
}

struct EtcdAuthenticateResponse: Decodable, Sendable {
    var token: String?
}

/// What the gateway answers with a non-200 status (grpc-gateway's error body).
struct EtcdErrorBody: Decodable, Sendable {
    var error: String?
    var message: String?
    var code: Int?
}

/// One line of a `/v3/watch` stream.
struct EtcdWatchMessage: Decodable, Sendable {
    struct Event: Decodable, Sendable {
        /// Absent for PUT, "DELETE" for deletes.
        var type: String?
        var kv: EtcdKeyValue?
        var prevKv: EtcdKeyValue?
    }
    struct Result: Decodable, Sendable {
        var header: EtcdHeader?
        var created: Bool?
        var canceled: Bool?
        var compactRevision: EtcdInt64?
        var cancelReason: String?
        var events: [Event]?
    }
    struct StreamError: Decodable, Sendable {
        var grpcCode: Int?
        var httpCode: Int?
        var message: String?
    }
    var result: Result?
    var error: StreamError?
}

enum EtcdJSON {
    static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        // Only plain strings, booleans and arrays: encoding cannot fail.
        return (try? encoder.encode(value)) ?? Data("{}".utf8)
    }

    static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(type, from: data)
    }
}
