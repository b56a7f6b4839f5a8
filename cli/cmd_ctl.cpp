// qshim ctl: the command-line client of the control API that `qshim run --api-socket` serves.
#include <fmt/format.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <thread>

#include "cli/common.hpp"
#include "cli/ctl_client.hpp"
#include "cli/ctl_console.hpp"
#include "cli/ctl_help.hpp"

namespace qshim::cli {

namespace {

using Json = nlohmann::ordered_json;  // bodies and answers keep the order the API documents
using Argv = std::vector<std::string>;

// ctl's own meaning of 1 and 3 (docs/cli.md); 2 is usage, as everywhere.
constexpr int exit_api_error = 1;
constexpr int exit_unreachable = 3;

int usage(const std::string& message) { return usage_error("ctl", message); }

// A relative path means the caller's folder, not the server's (which may be anywhere).
std::string absolute_path(const std::string& path) {
    if (path.empty() || path[0] == '/') return path;
    std::error_code ec;
    auto cwd = std::filesystem::current_path(ec);
    return ec ? path : (cwd / path).string();
}

bool whole_number(const std::string& s) {
    return !s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos;
}

// Prints an answer (the JSON on stdout, or the error on stderr) and returns the exit code.
int report(const HttpReply& reply) {
    Json body = Json::parse(reply.body, nullptr, false);
    if (reply.status >= 200 && reply.status < 300) {
        if (body.is_discarded())
            fmt::print("{}", reply.body);
        else
            fmt::print("{}\n", body.dump(2));
        return exit_ok;
    }
    if (body.is_discarded() || !body.is_object() || !body.contains("error") ||
        !body["error"].is_object()) {
        fmt::print(stderr, "qshim ctl: HTTP {}: {}\n", reply.status, reply.body);
        return exit_api_error;
    }
    const Json& e = body["error"];
    std::string message = e.contains("message") && e["message"].is_string()
                              ? e["message"].get<std::string>()
                              : fmt::format("HTTP {}", reply.status);
    fmt::print(stderr, "qshim ctl: {}\n", message);
    if (e.contains("fields") && e["fields"].is_array()) {
        for (const auto& f : e["fields"]) {
            if (!f.is_object()) continue;
            std::string path = f.value("path", ""), reason = f.value("reason", "");
            if (path.empty())
                fmt::print(stderr, "  {}\n", reason);
            else
                fmt::print(stderr, "  {}: {}\n", path, reason);
        }
    }
    if (e.contains("removing") && e["removing"].is_array() && !e["removing"].empty()) {
        std::string names;
        for (const auto& n : e["removing"])
            names +=
                (names.empty() ? "" : ", ") + (n.is_string() ? n.get<std::string>() : n.dump());
        fmt::print(stderr, "  still being removed (the guest has not released them yet): {}\n",
                   names);
    }
    return exit_api_error;
}

struct Ctl {
    std::string socket;

    int call(const std::string& method, const std::string& target,
             const std::string& body = {}) const {
        std::string error;
        auto reply = http_call(socket, HttpRequest{method, target, body}, error);
        if (!reply) return unreachable(error);
        return report(*reply);
    }

    int unreachable(const std::string& error) const {
        fmt::print(stderr,
                   "qshim ctl: cannot talk to the API at {}: {} (is 'qshim run --api-socket {}' "
                   "running?)\n",
                   socket, error, socket);
        return exit_unreachable;
    }
};

int no_arguments(const Ctl& ctl, const Argv& args, const char* command, const char* method,
                 const char* target) {
    if (!args.empty()) return usage(fmt::format("{} takes no arguments", command));
    return ctl.call(method, target);
}

int status(const Ctl& ctl, const Argv& a) {
    return no_arguments(ctl, a, "status", "GET", "/v1/vm");
}
int topology(const Ctl& ctl, const Argv& a) {
    return no_arguments(ctl, a, "topology", "GET", "/v1/vm/topology");
}
int cpus(const Ctl& ctl, const Argv& a) {
    return no_arguments(ctl, a, "cpus", "GET", "/v1/vm/cpus");
}
int pause(const Ctl& ctl, const Argv& a) {
    return no_arguments(ctl, a, "pause", "POST", "/v1/vm/pause");
}
int resume(const Ctl& ctl, const Argv& a) {
    return no_arguments(ctl, a, "resume", "POST", "/v1/vm/resume");
}

// Copies the options that map one to one onto body fields; the server checks their values.
void copy_options(const Args& args, Json& body,
                  std::initializer_list<std::pair<const char*, const char*>> map) {
    for (const auto& [option, field] : map)
        if (auto v = args.get(option)) body[field] = *v;
}

int disk_add(const Ctl& ctl, const Argv& a) {
    Args args(a,
              {"--name", "--path", "--format", "--bus", "--serial", "--pci-address", "--iothread",
               "--lun"},
              {"--read-only", "--cdrom"});
    if (!args.ok()) return usage(args.error());
    if (!args.positional().empty()) return usage("disk add takes options only");
    // An empty cdrom drive has no image; anything else needs one.
    const bool empty_drive = args.has("--cdrom") && !args.has("--path") && !args.has("--format");
    for (const char* required : {"--name", "--path", "--format"})
        if (!args.has(required) && (empty_drive ? required == std::string_view("--name") : true))
            return usage(fmt::format("disk add needs {}", required));
    Json body;
    body["name"] = *args.get("--name");
    if (auto path = args.get("--path")) body["path"] = absolute_path(*path);
    copy_options(args, body, {{"--format", "format"}, {"--bus", "bus"}});
    if (args.has("--cdrom")) body["device"] = "cdrom";
    if (args.has("--read-only")) body["readOnly"] = true;
    copy_options(args, body, {{"--serial", "serial"}, {"--pci-address", "pciAddress"}});
    for (const auto& [option, field] : {std::pair{"--iothread", "iothread"}, {"--lun", "lun"}})
        if (auto n = args.get(option)) {
            if (!whole_number(*n)) return usage(fmt::format("{} needs a whole number", option));
            body[field] = std::stoul(*n);
        }
    return ctl.call("POST", "/v1/vm/disks", body.dump());
}

int interface_add(const Ctl& ctl, const Argv& a) {
    Args args(a, {"--name", "--model", "--mac", "--tap", "--stream", "--pci-address"}, {"--user"});
    if (!args.ok()) return usage(args.error());
    if (!args.positional().empty()) return usage("interface add takes options only");
    if (!args.has("--name")) return usage("interface add needs --name");
    if (args.has("--user") + args.has("--tap") + args.has("--stream") != 1)
        return usage("interface add needs exactly one of --user, --tap IFNAME, --stream SOCKET");
    Json backend;
    if (args.has("--user")) {
        backend["type"] = "user";
    } else if (auto tap = args.get("--tap")) {
        backend["type"] = "tap";
        backend["name"] = *tap;
    } else {
        backend["type"] = "stream";
        backend["socket"] = absolute_path(*args.get("--stream"));
    }
    Json body;
    body["name"] = *args.get("--name");
    copy_options(args, body, {{"--model", "model"}, {"--mac", "mac"}});
    body["backend"] = std::move(backend);
    copy_options(args, body, {{"--pci-address", "pciAddress"}});
    return ctl.call("POST", "/v1/vm/interfaces", body.dump());
}

int remove(const Ctl& ctl, const Argv& a, const char* command, const char* collection) {
    Args args(a, {"--timeout"}, {});
    if (!args.ok()) return usage(args.error());
    if (args.positional().size() != 1)
        return usage(fmt::format("{} needs exactly one NAME", command));
    std::string target =
        fmt::format("/v1/vm/{}/{}", collection, percent_encode(args.positional()[0]));
    if (auto t = args.get("--timeout")) {
        if (!whole_number(*t)) return usage("--timeout must be a whole number of seconds");
        target += "?timeoutSeconds=" + *t;
    }
    return ctl.call("DELETE", target);
}

int disk_remove(const Ctl& ctl, const Argv& a) { return remove(ctl, a, "disk remove", "disks"); }

int disk_media(const Ctl& ctl, const Argv& a) {
    Args args(a, {"--path", "--format"}, {"--eject", "--force"});
    if (!args.ok()) return usage(args.error());
    if (args.positional().size() != 1) return usage("disk media needs exactly one NAME");
    if (args.has("--eject") == args.has("--path"))
        return usage("disk media needs --path P --format F to insert a disc, or --eject");
    if (args.has("--path") && !args.has("--format"))
        return usage("disk media --path needs --format");
    Json body = Json::object();
    if (auto path = args.get("--path")) body["path"] = absolute_path(*path);
    copy_options(args, body, {{"--format", "format"}});
    if (args.has("--eject")) body["eject"] = true;
    if (args.has("--force")) body["force"] = true;
    return ctl.call("POST",
                    fmt::format("/v1/vm/disks/{}/media", percent_encode(args.positional()[0])),
                    body.dump());
}
int interface_remove(const Ctl& ctl, const Argv& a) {
    return remove(ctl, a, "interface remove", "interfaces");
}

int shutdown(const Ctl& ctl, const Argv& a) {
    Args args(a, {"--timeout"}, {});
    if (!args.ok()) return usage(args.error());
    if (!args.positional().empty()) return usage("shutdown takes no arguments besides --timeout");
    std::string body;
    if (auto t = args.get("--timeout")) {
        if (!whole_number(*t)) return usage("--timeout must be a whole number of seconds");
        Json j;
        j["timeoutSeconds"] = std::stoul(*t);
        body = j.dump();
    }
    return ctl.call("POST", "/v1/vm/shutdown", body);
}

int events(const Ctl& ctl, const Argv& a) {
    if (!a.empty()) return usage("events takes no arguments");
    std::string error;
    // Lines go out as they arrive: a pipe into another tool must not wait for a buffer to fill.
    auto reply = http_call(ctl.socket, HttpRequest{"GET", "/v1/events", ""}, error,
                           [](std::string_view data) {
                               if (data.empty()) return;  // the stream opened; nothing to print
                               std::fwrite(data.data(), 1, data.size(), stdout);
                               std::fflush(stdout);
                           });
    if (!reply) return ctl.unreachable(error);
    if (reply->status != 200) return report(*reply);
    return exit_ok;
}

// What `migrate --wait` sees of the event stream, shared with the thread that reads it.
struct MigrationWatch {
    std::mutex mutex;
    std::condition_variable changed;
    bool open = false;         // the stream is subscribed
    bool ended = false;        // the stream ended (the VM exited, or the server went away)
    std::optional<Json> last;  // migration-completed, -failed or -cancelled
    std::string pending;       // a line not yet complete
};

std::string mib(const Json& e, const char* key) {
    return fmt::format("{:.0f} MiB", e.value(key, 0.0) / double(1 << 20));
}

void show_migration_event(const Json& e, bool terminal) {
    const std::string name = e.value("event", "");
    if (!terminal) {
        fmt::print("{}\n", e.dump());
    } else if (name == "migration-progress") {
        fmt::print("\r  {:5.1f}%  sent {}  remaining {}  dirtied {}/s  expected downtime {} ms   ",
                   e.value("percent", 0.0), mib(e, "transferredBytes"), mib(e, "remainingBytes"),
                   mib(e, "dirtyRateBytes"), e.value("expectedDowntimeMs", 0));
    } else if (name == "migration-policy") {
        fmt::print("\n  convergence: {}\n", e.value("detail", ""));
    } else if (name == "migration-completed") {
        fmt::print("\r  100.0%  migrated: total {} ms, downtime {} ms, setup {} ms, {} sent\n",
                   e.value("totalMs", 0), e.value("downtimeMs", 0), e.value("setupMs", 0),
                   mib(e, "transferredBytes"));
    } else if (name == "migration-failed" || name == "migration-cancelled") {
        fmt::print("\n  {}: {}\n", name.substr(10), e.value("reason", ""));
    }
    std::fflush(stdout);
}

// Splits what arrived into lines and keeps the migration's events.
void read_events(MigrationWatch& w, std::string_view data, bool terminal) {
    std::lock_guard lock(w.mutex);
    if (data.empty()) {
        w.open = true;
        w.changed.notify_all();
        return;
    }
    w.pending.append(data);
    for (size_t nl; (nl = w.pending.find('\n')) != std::string::npos;) {
        Json e = Json::parse(w.pending.substr(0, nl), nullptr, false);
        w.pending.erase(0, nl + 1);
        if (e.is_discarded() || !e.is_object()) continue;
        const std::string name = e.value("event", "");
        if (name.rfind("migration-", 0) != 0 || name == "migration-started") continue;
        show_migration_event(e, terminal);
        if (name == "migration-completed" || name == "migration-failed" ||
            name == "migration-cancelled") {
            w.last = e;
            w.changed.notify_all();
        }
    }
}

int migrate(const Ctl& ctl, const Argv& a) {
    Args args(a,
              {"--downtime-limit", "--max-bandwidth", "--multifd-channels", "--completion-timeout",
               "--progress-timeout"},
              {"--auto-converge", "--postcopy", "--wait"});
    if (!args.ok()) return usage(args.error());
    if (args.positional().size() != 1) return usage("migrate needs exactly one URI");
    Json body;
    body["uri"] = args.positional()[0];
    for (auto [option, field] : {std::pair{"--downtime-limit", "downtimeLimitMs"},
                                 std::pair{"--max-bandwidth", "maxBandwidthMiBps"},
                                 std::pair{"--multifd-channels", "multifdChannels"},
                                 std::pair{"--completion-timeout", "completionTimeoutSeconds"},
                                 std::pair{"--progress-timeout", "progressTimeoutSeconds"}})
        if (auto v = args.get(option)) {
            if (!whole_number(*v)) return usage(fmt::format("{} needs a whole number", option));
            body[field] = std::stoul(*v);
        }
    if (auto dir = args.get("--tls-dir")) body["tlsDir"] = absolute_path(*dir);
    if (auto name = args.get("--tls-hostname")) body["tlsHostname"] = *name;
    if (args.has("--auto-converge")) body["autoConverge"] = true;
    if (args.has("--postcopy")) body["postcopy"] = true;
    if (!args.has("--wait")) return ctl.call("POST", "/v1/vm/migrate", body.dump());

    // Subscribed before the request, so not even a migration of a second is missed.
    const bool terminal = isatty(STDOUT_FILENO);
    auto watch = std::make_shared<MigrationWatch>();
    std::thread reader([watch, socket = ctl.socket, terminal] {
        std::string error;
        http_call(socket, HttpRequest{"GET", "/v1/events", ""}, error,
                  [&](std::string_view data) { read_events(*watch, data, terminal); });
        std::lock_guard lock(watch->mutex);
        watch->ended = true;
        watch->changed.notify_all();
    });
    reader.detach();  // it holds `watch` by itself; the process may end before the stream
    {
        std::unique_lock lock(watch->mutex);
        watch->changed.wait(lock, [&] { return watch->open || watch->ended; });
        if (!watch->open) return ctl.unreachable("the event stream did not open");
    }
    std::string error;
    auto reply = http_call(ctl.socket, HttpRequest{"POST", "/v1/vm/migrate", body.dump()}, error);
    if (!reply) return ctl.unreachable(error);
    if (reply->status != 202) return report(*reply);
    std::unique_lock lock(watch->mutex);
    watch->changed.wait(lock, [&] { return watch->last || watch->ended; });
    if (!watch->last) {
        fmt::print(stderr, "qshim ctl: the VM's event stream ended before the migration did\n");
        return exit_unreachable;
    }
    return watch->last->value("event", "") == "migration-completed" ? exit_ok : exit_api_error;
}

int migration(const Ctl& ctl, const Argv& a) {
    return no_arguments(ctl, a, "migration", "GET", "/v1/vm/migration");
}

int console(const Ctl& ctl, const Argv& a) {
    if (!a.empty()) return usage("console takes no arguments");
    return run_ctl_console(ctl.socket);
}

int migrate_cancel(const Ctl& ctl, const Argv& a) {
    return no_arguments(ctl, a, "migrate-cancel", "DELETE", "/v1/vm/migration");
}

struct Command {
    std::string_view name;
    const char* help;
    int (*run)(const Ctl&, const Argv&);
};

constexpr Command commands[] = {
    {"status", ctl_help::status, status},
    {"topology", ctl_help::topology, topology},
    {"cpus", ctl_help::cpus, cpus},
    {"disk add", ctl_help::disk_add, disk_add},
    {"disk remove", ctl_help::disk_remove, disk_remove},
    {"disk media", ctl_help::disk_media, disk_media},
    {"interface add", ctl_help::interface_add, interface_add},
    {"interface remove", ctl_help::interface_remove, interface_remove},
    {"pause", ctl_help::pause, pause},
    {"resume", ctl_help::pause, resume},
    {"shutdown", ctl_help::shutdown, shutdown},
    {"events", ctl_help::events, events},
    {"console", ctl_help::console, console},
    {"migrate", ctl_help::migrate, migrate},
    {"migration", ctl_help::migration, migration},
    {"migrate-cancel", ctl_help::migrate_cancel, migrate_cancel},
};

}  // namespace

int cmd_ctl(const std::vector<std::string>& argv) {
    // --api-socket may come before or after the command; everything else belongs to the command.
    std::optional<std::string> socket;
    Argv words;
    bool options_done = false;
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& a = argv[i];
        if (a == "--") options_done = true;
        if (!options_done && a == "--api-socket") {
            if (i + 1 >= argv.size()) return usage("--api-socket needs a value");
            socket = argv[++i];
        } else if (!options_done && a.rfind("--api-socket=", 0) == 0) {
            socket = a.substr(std::string_view("--api-socket=").size());
        } else {
            words.push_back(a);
        }
    }
    const bool help = wants_help(words);
    if (words.empty() || words[0].empty() || words[0][0] == '-') {
        fmt::print("{}", ctl_help::main);
        return help ? exit_ok : exit_invalid;
    }
    std::string name = words[0];
    size_t used = 1;
    if (name == "disk" || name == "interface") {
        const bool known = words.size() >= 2 && (words[1] == "add" || words[1] == "remove" ||
                                                 (name == "disk" && words[1] == "media"));
        if (!known) {
            if (help) {
                for (const auto& c : commands)
                    if (c.name.substr(0, name.size() + 1) == name + " ") fmt::print("{}\n", c.help);
                return exit_ok;
            }
            return usage(fmt::format("{} needs a subcommand: {}", name,
                                     name == "disk" ? "add, remove or media" : "add or remove"));
        }
        name += " " + words[1];
        used = 2;
    }
    for (const auto& c : commands) {
        if (c.name != name) continue;
        if (help) {
            fmt::print("{}", c.help);
            return exit_ok;
        }
        if (!socket || socket->empty()) return usage("--api-socket PATH is required");
        return c.run(Ctl{*socket}, Argv(words.begin() + static_cast<long>(used), words.end()));
    }
    return usage(fmt::format("unknown command '{}'", name));
}

}  // namespace qshim::cli
