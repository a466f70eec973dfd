import Foundation
import LatheTestSupport
import Testing
@testable import LatheArchive

/// Crafts hostile archives with Python's tarfile, which writes whatever it is told to.
let craftScript = """
import io, sys, tarfile
kind, out = sys.argv[1], sys.argv[2]
def add(t, name, data=b"x", **fields):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    t.addfile(info, io.BytesIO(data) if info.isreg() else None)
with tarfile.open(out, "w:gz", format=tarfile.PAX_FORMAT) as t:
    add(t, "ok.txt", b"fine")
    if kind == "dotdot":
        add(t, "sub/../../escape-dotdot.txt", b"escaped")
    elif kind == "absolute":
        add(t, "/tmp/lathe-escape-absolute.txt", b"escaped")
    elif kind == "symlink":
        add(t, "link", b"", type=tarfile.SYMTYPE, linkname="/tmp")
        add(t, "link/lathe-escape-symlink.txt", b"escaped")
    elif kind == "hardlink":
        add(t, "hard", b"", type=tarfile.LNKTYPE, linkname="/etc/passwd")
    elif kind == "device":
        add(t, "null", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
    elif kind == "fifo":
        add(t, "pipe", b"", type=tarfile.FIFOTYPE)
    elif kind == "bomb":
        add(t, "zeros.bin", bytes(20 << 20))
    elif kind == "many":
        for i in range(300):
            add(t, "f%d" % i)
    elif kind == "duplicate":
        add(t, "ok.txt", b"again")
"""

func craft(_ kind: String) throws -> URL {
    let archive = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-craft-\(UUID().uuidString).tar.gz")
    let result = try TestSupport.run("python3", ["-c", craftScript, kind, archive.path])
    #expect(result.status == 0, "\(result.stderrText)")
    return archive
}

@Suite("safe extraction of untrusted archives")
struct SafeExtractorTests {
    let extractor = SafeExtractor(maxTotalBytes: 1 << 20, maxEntries: 100)

    @Test("hostile archives are refused and nothing is written", arguments: [
        ("dotdot", "paths with .. are not allowed"),
        ("absolute", "absolute paths are not allowed"),
        ("symlink", "symbolic links are not allowed"),
        ("hardlink", "hard links are not allowed"),
        ("device", "only regular files and directories are allowed"),
        ("fifo", "only regular files and directories are allowed"),
        ("bomb", "exceed 1048576 bytes (tar bomb?)"),
        ("many", "more than 100 entries"),
        ("duplicate", "it appears twice"),
    ])
    func refused(kind: String, message: String) throws {
        let archive = try craft(kind)
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-extract-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        let target = parent.appendingPathComponent("out")
        #expect {
            try extractor.extract(archive, to: target)
        } throws: { error in
            "\(error)".contains(message)
        }
        #expect(!FileManager.default.fileExists(atPath: target.path), "no partial target")
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent.path).isEmpty, "staging removed, nothing beside it")
        for escaped in ["/tmp/lathe-escape-absolute.txt", "/tmp/lathe-escape-symlink.txt", parent.appendingPathComponent("escape-dotdot.txt").path] {
            #expect(!FileManager.default.fileExists(atPath: escaped))
        }
    }

    @Test("a Lathe code layer extracts with its files and modes")
    func extractsCodeLayer() throws {
        let project = try makeModelProject(weightsSize: 16)
        try TestSupport.run("chmod", ["+x", project.appendingPathComponent("utils/helper.py").path])
        let (store, result) = try buildFresh(project)
        let target = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-extract-\(UUID().uuidString)")
        try SafeExtractor().extract(store.blobURL(result.layers[0].digest), to: target)
        #expect(try String(contentsOf: target.appendingPathComponent("predict.py"), encoding: .utf8).contains("class Predictor"))
        #expect(FileManager.default.isExecutableFile(atPath: target.appendingPathComponent("utils/helper.py").path))
        #expect(!FileManager.default.fileExists(atPath: target.appendingPathComponent("notes.txt").path))
        #expect(!FileManager.default.fileExists(atPath: target.appendingPathComponent("weights/w.bin").path))
    }
}
