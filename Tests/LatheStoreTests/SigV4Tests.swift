import Crypto
import Foundation
@testable import LatheStore
import LatheArchive
import Testing

/// AWS's published Signature Version 4 examples for S3 ("Examples: Signature calculations",
/// Amazon S3 API reference): same keys, same time, same requests, same signatures.
@Suite("SigV4: AWS's published S3 examples")
struct SigV4Tests {
    static let signer = SigV4(credentials: .init(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                              region: "us-east-1")
    static let date = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z

    @Test("GET object with a range")
    func getObject() {
        let headers = Self.signer.sign(method: "GET", url: URL(string: "https://examplebucket.s3.amazonaws.com/test.txt")!,
                                       headers: ["Range": "bytes=0-9"], payloadHash: SigV4.emptyPayload, date: Self.date)
        #expect(headers["Authorization"] == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(headers["x-amz-date"] == "20130524T000000Z")
    }

    @Test("PUT object with a signed payload, a Date and a storage class")
    func putObject() {
        let body = Data("Welcome to Amazon S3.".utf8)
        let hash = ByteEncoding.hex(SHA256.hash(data: body))
        #expect(hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let headers = Self.signer.sign(method: "PUT", url: URL(string: "https://examplebucket.s3.amazonaws.com/test$file.text")!,
                                       headers: ["Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"],
                                       payloadHash: hash, date: Self.date)
        #expect(headers["Authorization"]?.hasSuffix("Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd") == true,
                "\(headers["Authorization"] ?? "")")
    }

    @Test("GET bucket (list objects) with a query")
    func listObjects() {
        let headers = Self.signer.sign(method: "GET", url: URL(string: "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J")!,
                                       payloadHash: SigV4.emptyPayload, date: Self.date)
        #expect(headers["Authorization"]?.hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == true,
                "\(headers["Authorization"] ?? "")")
    }

    @Test("a presigned GET URL valid for a day")
    func presigned() {
        let url = Self.signer.presign(url: URL(string: "https://examplebucket.s3.amazonaws.com/test.txt")!, expires: 86400, date: Self.date)
        #expect(url.absoluteString.hasSuffix("X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"),
                "\(url.absoluteString)")
        #expect(url.absoluteString.contains("X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"))
    }

    @Test("the secret never shows in descriptions")
    func secretHidden() {
        #expect(!"\(Self.signer.credentials)".contains("wJalr"))
    }
}
