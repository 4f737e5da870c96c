#include "server/postprocess.h"

#include <cmath>

#include <gtest/gtest.h>

namespace clipserve::server {
namespace {

TEST(TopKSoftmaxTest, OrdersByProbabilityWithExactSoftmax) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 2.0f};
  std::vector<ScoredClass> top;
  TopKSoftmax(logits, 3, &top);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].index, 1);
  EXPECT_EQ(top[1].index, 3);
  EXPECT_EQ(top[2].index, 0);
  double sum = 0;
  for (float v : logits) sum += std::exp(v);
  EXPECT_NEAR(top[0].probability, std::exp(3.0) / sum, 1e-6);
  EXPECT_NEAR(top[1].probability, std::exp(2.0) / sum, 1e-6);
  EXPECT_NEAR(top[2].probability, std::exp(1.0) / sum, 1e-6);
}

TEST(TopKSoftmaxTest, ClampsKAndBreaksTiesByIndex) {
  const std::vector<float> logits = {0.5f, 0.5f, 0.5f};
  std::vector<ScoredClass> top;
  TopKSoftmax(logits, 10, &top);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].index, 0);
  EXPECT_EQ(top[1].index, 1);
  EXPECT_EQ(top[2].index, 2);
  EXPECT_NEAR(top[0].probability, 1.0 / 3, 1e-6);
  TopKSoftmax(logits, 0, &top);
  EXPECT_TRUE(top.empty());
}

TEST(TopKSoftmaxTest, StableForLargeLogits) {
  const std::vector<float> logits = {1000.f, 999.f};
  std::vector<ScoredClass> top;
  TopKSoftmax(logits, 2, &top);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_NEAR(top[0].probability, 1 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_FALSE(std::isnan(top[1].probability));
}

TEST(TopKSoftmaxTest, MatchesFullSortOnManyClasses) {
  std::vector<float> logits(400);
  for (int i = 0; i < 400; ++i) logits[i] = std::sin(i * 12.9898f) * 10;
  std::vector<ScoredClass> top;
  TopKSoftmax(logits, 5, &top);
  std::vector<int> order(400);
  for (int i = 0; i < 400; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return logits[a] > logits[b]; });
  for (int i = 0; i < 5; ++i) EXPECT_EQ(top[i].index, order[i]);
}

}  // namespace
}  // namespace clipserve::server
