/* The intrusive list: push at the head, O(1) removal from anywhere,
 * removing an unlinked node is harmless, moving a list keeps its nodes
 * removable. */
#include <criterion/criterion.h>

#include "core/list.h"

typedef struct item {
    int id;
    sg_list_node link;
} item;

static int ids(const sg_list *l, int *out, int max)
{
    int n = 0;
    for (sg_list_node *x = sg_list_first(l); x && n < max; x = x->next)
        out[n++] = sg_list_entry(x, item, link)->id;
    return n;
}

Test(list, push_is_at_the_head_and_remove_works_anywhere)
{
    sg_list l = { 0 };
    item it[4];
    cr_assert(sg_list_empty(&l));
    for (int i = 0; i < 4; i++) {
        it[i].id = i;
        sg_list_node_init(&it[i].link);
        cr_assert_not(sg_list_linked(&it[i].link));
        sg_list_push(&l, &it[i].link);
        cr_assert(sg_list_linked(&it[i].link));
    }
    int got[8], n = ids(&l, got, 8);
    cr_assert_eq(n, 4);
    for (int i = 0; i < 4; i++) cr_assert_eq(got[i], 3 - i);
    sg_list_remove(&it[2].link);           /* middle */
    sg_list_remove(&it[3].link);           /* head */
    sg_list_remove(&it[0].link);           /* tail */
    cr_assert_not(sg_list_linked(&it[2].link));
    sg_list_remove(&it[2].link);           /* not linked: nothing happens */
    n = ids(&l, got, 8);
    cr_assert_eq(n, 1);
    cr_assert_eq(got[0], 1);
    sg_list_remove(&it[1].link);
    cr_assert(sg_list_empty(&l));
}

Test(list, moved_nodes_stay_removable)
{
    sg_list a = { 0 }, b = { 0 };
    item it[3];
    for (int i = 0; i < 3; i++) {
        it[i].id = i;
        sg_list_node_init(&it[i].link);
        sg_list_push(&a, &it[i].link);
    }
    sg_list_move(&b, &a);
    cr_assert(sg_list_empty(&a));
    sg_list_remove(&it[2].link);           /* the head: its pprev must point into b */
    int got[4], n = ids(&b, got, 4);
    cr_assert_eq(n, 2);
    cr_assert_eq(got[0], 1);
    cr_assert_eq(got[1], 0);
    sg_list empty = { 0 };
    sg_list_move(&a, &empty);
    cr_assert(sg_list_empty(&a));
}
