// --help on every command, `list` as a dry run (filter, shards of the shipped matrix) and `env`.
#include <set>
#include <string>

#include "cli_support.h"

namespace qlc::e2e {
namespace {

TEST_F(CliTest, HelpOnEveryCommand) {
  struct Expect {
    std::vector<std::string> args;
    std::vector<std::string> parts;
  };
  const std::vector<Expect> cases = {
      {{"--help"}, {"Usage:", "run", "list", "env", "check", "explain", "collect"}},
      {{"run", "--help"},
       {"Usage:", "--matrix", "--device", "--filter", "--shard", "--jobs", "--out", "--resume",
        "--timeout", "--steps", "--isolation", "Exit status"}},
      {{"list", "--help"}, {"Usage:", "--matrix", "--filter", "--shard", "--device"}},
      {{"env", "--help"}, {"Usage:", "environment"}},
      {{"check", "--help"}, {"Usage:", "--matrix", "--rules", "--out", "Exit status", "fix"}},
      {{"explain", "--help"}, {"Usage:", "--matrix", "--rules", "--records"}},
      {{"collect", "--help"}, {"Usage:", "--out"}},
  };
  for (const auto& c : cases) {
    Result r = run(c.args);
    EXPECT_EQ(r.exit_code, 0) << c.args[0] << ": " << r.err;
    for (const auto& part : c.parts) {
      EXPECT_NE(r.out.find(part), std::string::npos) << c.args[0] << " help lacks " << part;
    }
  }
  // The worker subcommand and the fault switch are internal: not in the help.
  Result top = run({"--help"});
  EXPECT_EQ(top.out.find("worker"), std::string::npos) << top.out;
  Result run_help = run({"run", "--help"});
  EXPECT_EQ(run_help.out.find("--fault"), std::string::npos) << run_help.out;
}

TEST_F(CliTest, ListFiltersAndShardsPartition) {
  const fs::path m = matrix(kFourCases);
  Result all = run({"list", "--matrix", m.string()});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  const auto ids = non_empty_lines(all.out);
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids[0], full_id("cpu/none/param=fp32/compute=fp32/optim=adamw-fp32"));

  Result filtered = run({"list", "--matrix", m.string(), "--filter", "nf4,int8"});
  EXPECT_EQ(non_empty_lines(filtered.out),
            (std::vector<std::string>{full_id("cpu/nf4/param=fp32/compute=fp32/optim=adamw-fp32"),
                                      full_id("cpu/int8/param=fp32/compute=fp32/optim=adamw-fp32")}));

  std::multiset<std::string> union_of_shards;
  for (int i = 1; i <= 3; ++i) {
    Result shard = run({"list", "--matrix", m.string(), "--shard", std::to_string(i) + "/3"});
    ASSERT_EQ(shard.exit_code, 0) << shard.err;
    for (const auto& id : non_empty_lines(shard.out)) union_of_shards.insert(id);
  }
  EXPECT_EQ(union_of_shards, std::multiset<std::string>(ids.begin(), ids.end()));

  // --device replaces every case's device; auto resolves to a concrete one.
  Result cuda = run({"list", "--matrix", m.string(), "--device", "cuda:1"});
  ASSERT_EQ(cuda.exit_code, 0) << cuda.err;
  for (const auto& id : non_empty_lines(cuda.out)) EXPECT_EQ(id.rfind("cuda:1/", 0), 0u) << id;
  Result autod = run({"list", "--matrix", m.string(), "--device", "auto"});
  for (const auto& id : non_empty_lines(autod.out)) {
    EXPECT_TRUE(id.rfind("cpu/", 0) == 0 || id.rfind("cuda:0/", 0) == 0) << id;
  }
}

TEST_F(CliTest, ShardsOfTheShippedMatrixCoverItOnce) {
  // What CI's shards run: for several N, the N `list --shard I/N` outputs together are the
  // unsharded list, no case twice.
  const std::string m = (source_dir() / "cases/default.yaml").string();
  Result all = run({"list", "--matrix", m, "--device", "cpu"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  const auto ids = non_empty_lines(all.out);
  // cases/default.yaml: the 216-case core plus its 22 designed `include` cases (counted there).
  ASSERT_EQ(ids.size(), 238u);
  for (int n : {2, 5, 8}) {
    std::multiset<std::string> union_of_shards;
    for (int i = 1; i <= n; ++i) {
      const std::string shard_arg = std::to_string(i) + "/" + std::to_string(n);
      Result shard = run({"list", "--matrix", m, "--device", "cpu", "--shard", shard_arg});
      ASSERT_EQ(shard.exit_code, 0) << shard.err;
      EXPECT_FALSE(non_empty_lines(shard.out).empty()) << shard_arg;
      for (const auto& id : non_empty_lines(shard.out)) union_of_shards.insert(id);
    }
    EXPECT_EQ(union_of_shards, std::multiset<std::string>(ids.begin(), ids.end())) << n;
  }
}

TEST_F(CliTest, EnvPrintsStableFacts) {
  Result a = run({"env"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const auto j = nlohmann::json::parse(a.out);
  const auto& facts = j.at("facts");
  EXPECT_FALSE(facts.at("libtorch").at("version").get<std::string>().empty());
  EXPECT_FALSE(facts.at("cpu").at("model").get<std::string>().empty());
  EXPECT_TRUE(facts.at("cpu").at("isa").is_array());
  EXPECT_FALSE(facts.at("os").at("name").get<std::string>().empty());
  EXPECT_FALSE(facts.at("compiler").at("name").get<std::string>().empty());
  EXPECT_FALSE(facts.at("qlora_compat").at("git_revision").get<std::string>().empty());
  const auto& cuda = facts.at("cuda");
  if (cuda.at("available").get<bool>()) {
    EXPECT_FALSE(cuda.at("devices").empty());
    EXPECT_TRUE(cuda.contains("driver_version"));
  } else {
    EXPECT_FALSE(cuda.at("reason").get<std::string>().empty());
  }
  // Same machine, same build: same id.
  Result b = run({"env"});
  EXPECT_EQ(nlohmann::json::parse(b.out).at("id"), j.at("id"));
}

}  // namespace
}  // namespace qlc::e2e
