import Foundation

/// Which modules a model's code imports that nothing will provide: not the standard library,
/// not the project's own code, not `cog` (Lathe provides it), and not a listed requirement. A
/// Cog project often imports `requests` or `yaml` without listing them, because every Cog image
/// has them (the `cog` package depends on them); in Lathe such an import fails at setup.
public enum ImportCheck {
    /// One module-level import (`inspect_predictor.py --imports`).
    public struct Import: Sendable, Codable, Hashable {
        /// The file as given to ``imports(project:files:)``, relative to the project.
        public var file: String
        /// The top-level package name (`yaml` for `import yaml.constructor`).
        public var module: String
        public var line: Int
        public var stdlib: Bool
    }

    /// What the `cog` package itself depends on, by import name → distribution: Cog projects
    /// get these without listing them.
    public static let cogBrings: [(module: String, distribution: String)] = [
        ("requests", "requests"), ("yaml", "PyYAML"), ("typing_extensions", "typing_extensions"),
    ]

    /// Import names whose distribution is named otherwise (the common ones; an environment's
    /// own metadata answers exactly when there is one).
    static let distributions: [String: [String]] = [
        "yaml": ["pyyaml"], "PIL": ["pillow"], "cv2": ["opencv-python", "opencv-python-headless", "opencv-contrib-python",
                                                        "opencv-contrib-python-headless"],
        "sklearn": ["scikit-learn"], "skimage": ["scikit-image"], "bs4": ["beautifulsoup4"], "attr": ["attrs"],
        "dateutil": ["python-dateutil"], "google": ["protobuf", "google-auth", "google-cloud-storage", "googleapis-common-protos"],
        "jwt": ["pyjwt"], "serial": ["pyserial"], "Crypto": ["pycryptodome"], "OpenSSL": ["pyopenssl"], "magic": ["python-magic"],
        "dotenv": ["python-dotenv"], "docx": ["python-docx"], "fitz": ["pymupdf"], "huggingface_hub": ["huggingface-hub"],
        "typing_extensions": ["typing-extensions"], "sentencepiece": ["sentencepiece"], "onnxruntime": ["onnxruntime", "onnxruntime-gpu"],
        "pkg_resources": ["setuptools"], "setuptools": ["setuptools"], "soundfile": ["soundfile", "pysoundfile"],
    ]

    /// What a listed distribution brings along (its own dependencies, the common cases), so
    /// `import numpy` under `torchvision` alone is not reported.
    static let brings: [String: Set<String>] = [
        "torch": ["typing_extensions", "filelock", "sympy", "networkx", "jinja2", "fsspec"],
        "torchvision": ["torch", "numpy", "PIL"], "torchaudio": ["torch"],
        "transformers": ["numpy", "requests", "yaml", "tqdm", "huggingface_hub", "tokenizers", "safetensors", "packaging", "regex", "filelock"],
        "diffusers": ["numpy", "PIL", "requests", "huggingface_hub", "safetensors", "regex", "filelock"],
        "accelerate": ["numpy", "torch", "yaml", "packaging", "psutil", "huggingface_hub", "safetensors"],
        "huggingface-hub": ["requests", "yaml", "tqdm", "filelock", "fsspec", "packaging", "typing_extensions"],
        "pandas": ["numpy", "dateutil", "pytz"], "scipy": ["numpy"], "scikit-learn": ["numpy", "scipy", "joblib"],
        "scikit-image": ["numpy", "scipy", "PIL", "imageio", "networkx"], "matplotlib": ["numpy", "PIL"],
        "opencv-python": ["numpy"], "opencv-python-headless": ["numpy"], "fastapi": ["pydantic", "starlette", "typing_extensions"],
        "pydantic": ["typing_extensions"], "requests": ["urllib3", "idna", "certifi", "charset_normalizer"],
    ]

    /// The module-level imports of `files` (paths relative to `project`), read without running them.
    public static func imports(project: URL, files: [String]) throws -> [Import] {
        guard let script = PredictorInspection.scriptURL else {
            throw Diagnostic(nil, "inspect_predictor.py is missing from the Lathe installation", fix: "reinstall Lathe")
        }
        let paths = files.map { project.appendingPathComponent($0).path }
        let result = try ChildProcess.run(ChildProcess.python, [script.path, "--imports"] + paths)
        guard result.status == 0 else {
            throw Diagnostic(nil, "the import inspector failed: \(result.stderrText)", fix: "check that python3 ≥ 3.9 is installed")
        }
        let base = project.path.hasSuffix("/") ? project.path : project.path + "/"
        return try JSONDecoder().decode([Import].self, from: result.stdout).map { found in
            var found = found
            if found.file.hasPrefix(base) { found.file = String(found.file.dropFirst(base.count)) }
            return found
        }
    }

    /// The Python files at the top of the project and the `entries` (helpers a predictor imports live there).
    public static func codeFiles(project: URL, entries: [String]) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: project.path)) ?? []
        let top = names.filter { $0.hasSuffix(".py") && !$0.hasPrefix(".") }.sorted()
        var nested: [String] = []
        for entry in entries where !top.contains(entry) && !nested.contains(entry) { nested.append(entry) }
        return nested + top
    }

    /// The distribution a requirement line names, normalized (PEP 503), or nil for options and URLs.
    public static func distribution(_ requirement: String) -> String? {
        let line = requirement.trimmingCharacters(in: .whitespaces)
        guard let first = line.first, first.isLetter || first.isNumber else { return nil }
        let name = line.prefix { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }
        return normalize(String(name))
    }

    static func normalize(_ name: String) -> String {
        name.lowercased().replacingOccurrences(of: "_", with: "-").replacingOccurrences(of: ".", with: "-")
    }

    /// Whether one of `requirements` (or, when known, what an environment built from them has
    /// installed: `installed`, top-level import names) provides `module`.
    public static func provides(_ requirements: [String], module: String, installed: Set<String>? = nil) -> Bool {
        if let installed { return installed.contains(module) }
        let listed = Set(requirements.compactMap(distribution))
        let candidates = Set([normalize(module), "python-" + normalize(module), "py" + normalize(module)] + (distributions[module] ?? []))
        if !listed.isDisjoint(with: candidates) { return true }
        return listed.contains { brings[$0]?.contains(module) == true }
    }

    /// The imports nothing provides, each once per module (the first place it is imported).
    public static func unprovided(_ imports: [Import], project: URL, requirements: [String], installed: Set<String>? = nil) -> [Import] {
        var seen = Set<String>()
        return imports.filter { found in
            guard !found.stdlib, found.module != "cog", seen.insert(found.module).inserted else { return false }
            let fileManager = FileManager.default
            let own = fileManager.fileExists(atPath: project.appendingPathComponent(found.module + ".py").path)
                || fileManager.fileExists(atPath: project.appendingPathComponent(found.module).path)
            return !own && !provides(requirements, module: found.module, installed: installed)
        }
    }

    /// The top-level import names an environment's distributions install (from each
    /// `*.dist-info/RECORD` under `sitePackages`; read as files, nothing of the environment runs).
    public static func installedModules(sitePackages: URL) -> Set<String> {
        let fileManager = FileManager.default
        var modules = Set<String>()
        for entry in (try? fileManager.contentsOfDirectory(atPath: sitePackages.path)) ?? [] where entry.hasSuffix(".dist-info") {
            let record = sitePackages.appendingPathComponent(entry).appendingPathComponent("RECORD")
            guard let text = try? String(contentsOf: record, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                guard let first = line.split(separator: ",").first?.split(separator: "/").first.map(String.init),
                      !first.hasSuffix(".dist-info"), !first.hasSuffix(".data"), first != "__pycache__", !first.hasPrefix("..") else { continue }
                let name = first.hasSuffix(".py") ? String(first.dropLast(3)) : first.split(separator: ".").first.map(String.init) ?? first
                if !name.isEmpty, !name.contains("-") { modules.insert(name) }
            }
        }
        return modules
    }
}
