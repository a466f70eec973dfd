import Hummingbird
import LatheStore

extension BlobStore {
    /// A response body that streams the object (or `range` of it).
    func responseBody(_ key: BlobKey, range: ClosedRange<Int64>? = nil) -> ResponseBody {
        ResponseBody { writer in
            try await read(key, range: range) { try await writer.write($0) }
            try await writer.finish(nil)
        }
    }
}
