[
  (experiment_item)
  (body)
  (use_list)
  (list)
  (block_comment)
] @fold
