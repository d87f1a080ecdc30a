/* An intrusive doubly linked list whose head is a single pointer.
 *
 * The node lives inside the object it links (sg_list_entry() gets the
 * object back), so linking allocates nothing. Each node points at the
 * pointer that points at it (pprev), which makes removal O(1) without
 * the head and keeps the head one word: a timer wheel has hundreds of
 * slots. Push is at the head; a node knows whether it is linked
 * (pprev != NULL), so removing an unlinked node is a no-op. */
#ifndef SG_CORE_LIST_H
#define SG_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sg_list_node sg_list_node;
struct sg_list_node {
    sg_list_node *next, **pprev;       /* pprev == NULL: not in a list */
};

typedef struct sg_list {
    sg_list_node *first;
} sg_list;

/* The object of type `type` whose member `member` is node n. */
#define sg_list_entry(n, type, member) ((type *)(void *)((char *)(n) - offsetof(type, member)))

static inline void sg_list_node_init(sg_list_node *n)
{
    n->next = NULL;
    n->pprev = NULL;
}

static inline bool sg_list_linked(const sg_list_node *n)
{
    return n->pprev != NULL;
}

static inline bool sg_list_empty(const sg_list *l)
{
    return l->first == NULL;
}

static inline sg_list_node *sg_list_first(const sg_list *l)
{
    return l->first;
}

static inline void sg_list_push(sg_list *l, sg_list_node *n)
{
    n->next = l->first;
    if (n->next) n->next->pprev = &n->next;
    n->pprev = &l->first;
    l->first = n;
}

static inline void sg_list_remove(sg_list_node *n)
{
    if (!n->pprev) return;
    *n->pprev = n->next;
    if (n->next) n->next->pprev = n->pprev;
    n->next = NULL;
    n->pprev = NULL;
}

/* Moves every node of src to dst (which must be empty); src ends empty. */
static inline void sg_list_move(sg_list *dst, sg_list *src)
{
    dst->first = src->first;
    if (dst->first) dst->first->pprev = &dst->first;
    src->first = NULL;
}

#endif
